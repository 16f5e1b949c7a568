"""What must hold on every supported stack, the oldest (torch 2.1.2, `make test-oldest`) and the
locked one: the toy detector and segmentor train through tools/train.py, and each feature that
needs a newer torch either works or stops with an error naming the torch release it needs."""
import json
import math

import pytest
import torch
from mmengine.model import BaseModel

from mmcoatnet.models import CoAtNet
from mmcoatnet.torch_compat import (
    COMPILED_TRAINING,
    FLEX_ATTENTION,
    FLEX_ATTENTION_ON_CPU,
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
    """Where it works, a CoAtNet with FlexAttention gives the default kernels' maps (in inference:
    FlexAttention has no CPU backward). Its attention shapes are test_compile.py's flex test's, so
    the two share inductor's cached kernel: compiling it is most of this test when not cached (26 s
    against 7 s on 2 busy cores)."""
    arch = dict(depths=(1, 1, 2, 1), channels=(16, 32, 64, 64))
    torch.manual_seed(0)
    with newer_torch_needed(FLEX_ATTENTION):
        model = CoAtNet(arch=arch, attention_impl='flex').eval()
    if TORCH_VERSION < FLEX_ATTENTION_ON_CPU:  # built above; run only where a CPU compiles it
        return
    reference = CoAtNet(arch=arch).eval()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 64, 80)  # S3: 4x5 tokens, S4: 2x3
    with torch.no_grad():
        maps, expected = model(x), reference(x)
    assert [m.shape[1:] for m in maps] == [(16, 16, 20), (32, 8, 10), (64, 4, 5), (64, 2, 3)]
    for got, want in zip(maps, expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


class _TinyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 1))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return dict(loss=self.net(inputs).square().mean())


def test_compiled_training_works_or_names_the_torch_it_needs():
    """Where it works: mmengine's train_step, compiled as compile=True compiles it, takes a step
    after the preparation (the optimizer step kept eager): the loss is finite, every weight moved.
    The optimizer wrapper is the runner's kind (ConfigDict param groups, clipping), which fails
    inside dynamo unprepared. aot_eager: dynamo and AOT autograd, without inductor's minutes."""
    from mmengine.config import ConfigDict
    from mmengine.optim import build_optim_wrapper

    from mmcoatnet.engine.hooks import prepare_compiled_training
    torch.manual_seed(0)
    model = _TinyModel()
    wrapper = build_optim_wrapper(model, ConfigDict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05),
        paramwise_cfg=dict(norm_decay_mult=0.0), clip_grad=dict(max_norm=10.0)))
    with newer_torch_needed(COMPILED_TRAINING):
        prepare_compiled_training(wrapper)
    if TORCH_VERSION < COMPILED_TRAINING:
        return
    before = [p.detach().clone() for p in model.parameters()]
    train_step = torch.compile(model.train_step, backend='aot_eager')
    log_vars = train_step(dict(inputs=torch.randn(2, 3, 16, 16)), wrapper)
    assert math.isfinite(log_vars['loss'].item()) and log_vars['loss'].item() > 0
    assert all(not torch.equal(old, new) for old, new in zip(before, model.parameters()))


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
