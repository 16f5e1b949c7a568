"""What must hold on every supported stack, the oldest (torch 2.1.2, `make test-oldest`) and the
locked one: the toy detector and segmentor train through tools/train.py, and each feature that
needs a newer torch either works or stops with an error naming the torch release it needs."""
import json
import math

import pytest
import torch

from mmcoatnet.models import CoAtNet
from mmcoatnet.torch_compat import (
    COMPILED_TRAINING,
    FLEX_ATTENTION,
    MEMORY_SIMULATION,
    TORCH_VERSION,
)

from helpers import TOY_DET, TOY_SEG, run_tool, scalars, small_det_config, small_seg_config


@pytest.mark.parametrize('task', ['det', 'seg'])
def test_a_toy_config_trains_a_step_through_the_tool(tmp_path, toy_data, task):
    if task == 'det':  # one iteration of two images, no validation
        config = small_det_config(tmp_path, toy_data, batch_size=2, workers=0)
        options = ['train_dataloader.dataset.indices=2', 'train_cfg.val_interval=2']
        checkpoint = 'epoch_1.pth'
    else:
        config = small_seg_config(tmp_path, toy_data, iters=1)
        options = ['train_cfg.val_interval=2']
        checkpoint = 'iter_1.pth'
    run_tool('tools/train.py', config, '--work-dir', str(tmp_path / 'w'), '--cfg-options', *options)
    records = scalars(tmp_path / 'w')
    assert len(records) == 1 and math.isfinite(records[0]['loss']) and records[0]['loss'] > 0
    assert (tmp_path / 'w' / checkpoint).is_file()


def newer_torch_needed(version):
    """pytest.raises for a feature needing ``version`` where this torch is older, else nothing."""
    if TORCH_VERSION >= version:
        return _NoError()
    return pytest.raises(RuntimeError, match=f'needs torch >= {version}; this is torch')


class _NoError:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_flex_attention_works_or_names_the_torch_it_needs():
    with newer_torch_needed(FLEX_ATTENTION):
        CoAtNet(arch='coatnet-pico', attention_impl='flex')


def test_compiled_training_works_or_names_the_torch_it_needs():
    from mmengine.optim import build_optim_wrapper

    from mmcoatnet.engine.hooks import prepare_compiled_training
    model = torch.nn.Linear(2, 2)
    wrapper = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.1)))
    with newer_torch_needed(COMPILED_TRAINING):
        prepare_compiled_training(wrapper)


def test_the_memory_simulation_works_or_names_the_torch_it_needs(tmp_path):
    result = run_tool('tools/analysis_tools/train_memory.py', TOY_SEG, '--simulate', 'cpu',
                      '--skip-with-cp', '--shape', '64', '--batch', '2',
                      '--out', str(tmp_path / 'sim.json'), check=False)
    if TORCH_VERSION >= MEMORY_SIMULATION:
        assert result.returncode == 0, result.stderr[-2000:]
        assert json.loads((tmp_path / 'sim.json').read_text())['peak_bytes']['default']['total'] > 0
    else:
        assert result.returncode != 0
        assert f'needs torch >= {MEMORY_SIMULATION}' in result.stderr


def test_flops_count_works_or_names_the_torch_it_needs(tmp_path):
    result = run_tool('tools/analysis_tools/get_flops.py', TOY_DET, '--shape', '64',
                      '--proposals', '10', check=False)
    if TORCH_VERSION >= '2.2':
        assert result.returncode == 0 and 'GMACs' in result.stdout, result.stderr[-2000:]
    else:
        assert result.returncode != 0 and 'needs torch' in result.stderr
        assert 'Traceback' not in result.stderr
