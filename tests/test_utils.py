"""mmcoatnet/utils, the tools' shared plumbing, and the resident memory of mmcoatnet/analysis,
alone and in process (tests/test_tools.py runs the tools themselves)."""
import argparse
import os
import os.path as osp

import pytest
from mmengine.config import Config

from mmcoatnet.analysis.memory import current_rss_bytes, peak_rss_bytes
from mmcoatnet.utils.cli import (
    ToolError,
    add_cfg_options_argument,
    add_launcher_arguments,
    export_local_rank,
    load_config,
    refuse_amp_without_gpu,
    set_work_dir,
    use_amp_optim_wrapper,
)
from mmcoatnet.utils.results import append_json, write_json
from mmcoatnet.utils.sizes import add_shape_argument, add_sizes_argument

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOY_DET = osp.join(ROOT, 'configs', 'toy', 'maskrcnn_coatnet-pico_toy.py')


def test_config_loads_with_cfg_options_from_the_command_line():
    parser = argparse.ArgumentParser()
    add_cfg_options_argument(parser)
    args = parser.parse_args(['--cfg-options', 'model.backbone.with_cp=True',
                              'train_dataloader.batch_size=3'])
    cfg = load_config(TOY_DET, args.cfg_options)
    assert cfg.model.backbone.with_cp is True and cfg.train_dataloader.batch_size == 3
    assert load_config(TOY_DET).model.backbone.get('with_cp', False) is False


def test_work_dir_from_the_argument_the_config_or_the_config_name():
    cfg = Config(dict())
    set_work_dir(cfg, 'configs/a_model.py')
    assert cfg.work_dir == osp.join('./work_dirs', 'a_model')
    set_work_dir(cfg, 'configs/a_model.py', 'elsewhere')
    assert cfg.work_dir == 'elsewhere'
    own = Config(dict(work_dir='its_own'))
    set_work_dir(own, 'configs/a_model.py')
    assert own.work_dir == 'its_own'


def test_local_rank_comes_from_the_argument_unless_the_launcher_set_it(monkeypatch):
    parser = argparse.ArgumentParser()
    add_launcher_arguments(parser)
    monkeypatch.delenv('LOCAL_RANK', raising=False)
    export_local_rank(parser.parse_args(['--local-rank', '2']).local_rank)
    assert os.environ['LOCAL_RANK'] == '2'
    export_local_rank(parser.parse_args(['--local_rank', '5', '--launcher', 'pytorch']).local_rank)
    assert os.environ['LOCAL_RANK'] == '2'  # torchrun's value stands


def test_amp_is_refused_off_the_gpu_with_what_to_do_instead():
    refuse_amp_without_gpu('cuda:1', instead='train')  # a GPU: nothing to refuse
    with pytest.raises(ToolError, match=r"^--amp needs a GPU .*; train without --amp here$"):
        refuse_amp_without_gpu('cpu', instead='train')


def test_amp_switches_the_optim_wrapper_but_keeps_a_configured_one():
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))))
    use_amp_optim_wrapper(cfg)
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.dtype, cfg.optim_wrapper.loss_scale) == \
        ('AmpOptimWrapper', 'float16', 'dynamic')
    configured = Config(dict(optim_wrapper=dict(type='AmpOptimWrapper', dtype='bfloat16',
                                                loss_scale=512.)))
    use_amp_optim_wrapper(configured)
    assert configured.optim_wrapper.to_dict() == dict(type='AmpOptimWrapper', dtype='bfloat16',
                                                      loss_scale=512.)


def test_resident_memory_grows_with_touched_pages():
    import mmap
    before = current_rss_bytes()
    # fresh pages of our own (a heap block could reuse memory freed earlier in the session),
    # written so that they are resident
    block = mmap.mmap(-1, 64 << 20)
    block.write(b'\x01' * (64 << 20))
    assert current_rss_bytes() - before > 48 << 20
    assert peak_rss_bytes() > before + (48 << 20)  # the kernel's high-water mark, KiB-rounded
    block.close()


def size_parser():
    parser = argparse.ArgumentParser()
    add_shape_argument(parser, default=(800, 1333))
    add_sizes_argument(parser, default=[(224, 224)])
    return parser


@pytest.mark.parametrize('tokens, shape', [(['800', '1344'], (800, 1344)),
                                           (['800x1344'], (800, 1344)), (['512'], (512, 512))])
def test_one_size_is_h_w_or_hxw_or_a_square(tokens, shape):
    assert size_parser().parse_args(['--shape', *tokens]).shape == shape
    assert size_parser().parse_args([]).shape == (800, 1333)


def test_several_sizes_are_each_n_or_hxw():
    args = size_parser().parse_args(['--sizes', '224', '333x517'])
    assert args.sizes == [(224, 224), (333, 517)]


@pytest.mark.parametrize('argv, message', [
    (['--shape', '31', '64'], "CoAtNet needs sides of at least 32, got '31x64'"),
    (['--shape', '1', '2', '3'], 'a shape is N, HxW or H W'),
    (['--shape', '64y64'], 'a size is N or HxW'),
    (['--sizes', '224', '16'], "CoAtNet needs sides of at least 32, got '16'"),
])
def test_bad_sizes_are_refused_by_the_parser_naming_the_form(argv, message, capsys):
    with pytest.raises(SystemExit):
        size_parser().parse_args(argv)
    assert message in capsys.readouterr().err


def test_results_files_record_the_torch_version_and_date_and_replace_by_key(tmp_path):
    import json

    import torch
    path = tmp_path / 'deep' / 'result.json'
    write_json(str(path), dict(figure=1.5))
    written = json.loads(path.read_text())
    assert written['figure'] == 1.5 and written['torch'] == torch.__version__
    assert len(written['date']) == 10  # YYYY-MM-DD
    listed = tmp_path / 'list.json'
    for name, value in [('a', 1), ('b', 2), ('a', 3)]:
        append_json(str(listed), dict(name=name, value=value), key=lambda entry: entry['name'])
    assert [(e['name'], e['value']) for e in json.loads(listed.read_text())] == [('b', 2), ('a', 3)]
