"""Loading timm and mmcoatnet checkpoints: exactness against timm, formats, resizing, errors."""
import copy
import glob
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.logging import MessageHub
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mmcoatnet.checkpoint import (CheckpointMismatchError, guess_architectures, load_pretrained,
                                  read_checkpoint)
from mmcoatnet.models import ARCH_SETTINGS, CoAtNet
from mmcoatnet.safe_load import UnsafeCheckpointError

ROOT = osp.dirname(osp.dirname(__file__))
FIXTURES = osp.join(ROOT, 'tests', 'data', 'timm_fixtures')
FIXTURE_ARCHS = sorted(osp.basename(p)[:-len('.safetensors')]
                       for p in glob.glob(osp.join(FIXTURES, 'coatnet-*.safetensors')))
CONVERTER = osp.join(ROOT, 'tools', 'model_converters', 'timm2mmcoatnet.py')


def load_fixture(arch):
    path = osp.join(FIXTURES, f'{arch}.safetensors')
    with safe_open(path, 'pt') as f:
        meta = json.loads(f.metadata()['fixture'])
    tensors = load_file(path)
    state = {k[len('state_dict.'):]: v for k, v in tensors.items() if k.startswith('state_dict.')}
    outs = [tensors[f'out.{i}'] for i in range(4)]
    return meta, state, outs, path


def reduced_arch(meta):
    """The table row of the fixture's architecture at the fixture's reduced size."""
    arch = copy.deepcopy(ARCH_SETTINGS[meta['arch']])
    reduced = meta['reduced']
    arch.update({k: reduced[k] for k in ('stem_channels', 'depths', 'channels')})
    arch['transformer']['rel_pos_mlp_dim'] = reduced['rel_pos_mlp_dim']
    return arch


def fixture_input():
    return load_file(osp.join(FIXTURES, 'input.safetensors'))['input']


def run(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def test_every_timm_compatible_architecture_has_a_fixture():
    timm_archs = sorted(k for k, v in ARCH_SETTINGS.items() if v.get('timm_name'))
    assert FIXTURE_ARCHS == timm_archs and len(timm_archs) == 7


@pytest.mark.parametrize('arch', FIXTURE_ARCHS)
def test_outputs_equal_timm(arch, tmp_path):
    meta, state, expected, path = load_fixture(arch)
    assert meta['arch'] == arch
    torch.save(state, tmp_path / 'timm.pth')  # what a timm .pth holds: a bare state dict
    model = CoAtNet(arch=reduced_arch(meta),
                    init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'timm.pth')))
    model.init_weights()
    outs = run(model, fixture_input())
    for index, (out, ref) in enumerate(zip(outs, expected)):
        assert out.shape == ref.shape
        diff = (out - ref).abs().max().item()
        assert diff <= 1e-4, f'{arch} S{index + 1}: max abs diff {diff:.2e}'


@pytest.mark.parametrize('arch', ['coatnet-0-rw', 'coatnet-rmlp-2-rw'])
def test_converter_round_trip_pth_and_safetensors(arch, tmp_path):
    meta, state, expected, _ = load_fixture(arch)
    src = tmp_path / 'timm.safetensors'
    save_file({**state, 'head.fc.weight': torch.zeros(10, 64)}, str(src))
    for suffix in ('pth', 'safetensors'):
        dst = tmp_path / f'converted.{suffix}'
        result = subprocess.run([sys.executable, CONVERTER, str(src), str(dst)],
                                capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        assert 'architecture:' in result.stdout and 'parameters:' in result.stdout
        converted = read_checkpoint(str(dst))
        converted = converted.get('state_dict', converted)
        assert not any(k.startswith('head.') for k in converted)
        model = CoAtNet(arch=reduced_arch(meta),
                        init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
        model.init_weights()
        for out, ref in zip(run(model, fixture_input()), expected):
            assert (out - ref).abs().max() <= 1e-4


def test_converter_recognises_a_full_size_architecture(tmp_path):
    model = CoAtNet(arch='coatnet-0')
    src = tmp_path / 'model.safetensors'
    # a timm-format file: transformer 1x1 layers as convs, tables as (L, heads)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith('rel_pos.table'):
            key, value = key.replace('rel_pos.table', 'rel_pos.relative_position_bias_table'), \
                value.flatten(1).t()
        elif value.dim() == 2:
            value = value[:, :, None, None]
        state[key.replace('shortcut_proj.', 'shortcut.expand.')] = value.contiguous()
    save_file(state, str(src))
    result = subprocess.run([sys.executable, CONVERTER, str(src), str(tmp_path / 'out.pth')],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert 'architecture: coatnet-0' in result.stdout and '23.68M' in result.stdout


def test_other_pretraining_size_is_resized_and_runs_at_detection_resolution(tmp_path):
    meta, state, expected, path = load_fixture('coatnet-1-rw')
    torch.save({'state_dict': state}, tmp_path / 'timm224.pth')
    model = CoAtNet(arch=reduced_arch(meta), pretrain_img_size=384,
                    init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'timm224.pth')))
    model.init_weights()
    table = model.stages[2].blocks[1].attn.rel_pos.table
    assert table.shape[-2:] == (47, 47)  # 384 / 16 = 24 -> 2 * 24 - 1
    outs = run(model, torch.randn(1, 3, 800, 1344))
    assert [o.shape[-2:] for o in outs] == [(200, 336), (100, 168), (50, 84), (25, 42)]
    assert all(torch.isfinite(o).all() for o in outs)
    # and back: the 384 model's weights into a 224 model reproduce a resized-twice table
    torch.save(model.state_dict(), tmp_path / 'mm384.pth')
    small = CoAtNet(arch=reduced_arch(meta), pretrain_img_size=224,
                    init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'mm384.pth')))
    small.init_weights()
    assert small.stages[2].blocks[1].attn.rel_pos.table.shape[-2:] == (27, 27)


def test_wrapped_and_prefixed_checkpoints_load(tmp_path):
    source = CoAtNet(arch='coatnet-0', out_indices=(3,))
    source.init_weights()
    wrapped = {'meta': {'epoch': 3},
               'state_dict': {f'module.backbone.{k}': v for k, v in source.state_dict().items()}}
    wrapped['state_dict']['module.neck.conv.weight'] = torch.zeros(3)
    wrapped['state_dict']['module.backbone.head.fc.weight'] = torch.zeros(3)
    torch.save(wrapped, tmp_path / 'detector.pth')
    target = CoAtNet(arch='coatnet-0', out_indices=(3,),
                     init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'detector.pth')))
    target.init_weights()
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(run(source, x)[0], run(target, x)[0])


def test_mmengine_checkpoint_with_message_hub_loads_safely(tmp_path):
    hub = MessageHub.get_instance('mmcoatnet-test')
    hub.update_scalar('train/loss', 0.5)
    source = CoAtNet(arch=dict(depths=(1, 1, 1, 1), channels=(16, 32, 64, 64)))
    torch.save({'meta': {'seed': 0}, 'message_hub': hub.state_dict(),
                'state_dict': {f'backbone.{k}': v for k, v in source.state_dict().items()}},
               tmp_path / 'epoch_1.pth')
    target = CoAtNet(arch=dict(depths=(1, 1, 1, 1), channels=(16, 32, 64, 64)))
    report = load_pretrained(target, str(tmp_path / 'epoch_1.pth'))
    assert report.source == 'mmcoatnet' and not report.missing and not report.unexpected


class Payload:
    def __reduce__(self):
        return (print, ('this would have run',))


def test_a_pickle_with_arbitrary_globals_is_refused(tmp_path):
    torch.save({'state_dict': {}, 'evil': Payload()}, tmp_path / 'evil.pth')
    model = CoAtNet(arch=dict(depths=(1, 1, 1, 1), channels=(16, 32, 64, 64)))
    with pytest.raises(UnsafeCheckpointError, match='refusing to load'):
        load_pretrained(model, str(tmp_path / 'evil.pth'))


def test_a_resnet_checkpoint_is_rejected_with_a_clear_error(tmp_path):
    from mmdet.models.backbones import ResNet
    torch.save(ResNet(depth=18).state_dict(), tmp_path / 'resnet18.pth')
    model = CoAtNet(arch='coatnet-0')
    with pytest.raises(CheckpointMismatchError, match="matches no CoAtNet.*'coatnet-0'"):
        load_pretrained(model, str(tmp_path / 'resnet18.pth'))


def test_the_wrong_architecture_is_named(tmp_path):
    save_file(CoAtNet(arch='coatnet-0').state_dict(), str(tmp_path / 'c0.safetensors'))
    model = CoAtNet(arch='coatnet-1')
    with pytest.raises(CheckpointMismatchError, match="configured backbone 'coatnet-1'.*look like 'coatnet-0'"):
        load_pretrained(model, str(tmp_path / 'c0.safetensors'))


def test_partial_fit_is_loaded_and_summarised(tmp_path):
    arch = dict(depths=(1, 1, 2, 1), channels=(16, 32, 64, 64))
    source = CoAtNet(arch=arch)
    state = source.state_dict()
    state.pop('stages.3.blocks.0.mlp.fc2.bias')
    state['stages.3.blocks.0.mlp.fc1.bias'] = torch.zeros(7)
    torch.save(state, tmp_path / 'partial.pth')
    report = load_pretrained(CoAtNet(arch=arch), str(tmp_path / 'partial.pth'))
    assert report.missing == ['stages.3.blocks.0.mlp.fc2.bias']
    assert report.mismatched == ['stages.3.blocks.0.mlp.fc1.bias: (7,) vs (256,)']


def test_guess_names_table_architectures():
    state = CoAtNet(arch='coatnet-bn-0-rw').state_dict()
    assert guess_architectures(state) == ['coatnet-bn-0-rw']
