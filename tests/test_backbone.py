import copy

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmcoatnet.models import ARCH_SETTINGS, CoAtNet

STRIDES = (4, 8, 16, 32)
# Paper, Table 3: model size with a 1000-class head.
PAPER_PARAMS_M = {'coatnet-0': 25, 'coatnet-1': 42, 'coatnet-2': 75, 'coatnet-3': 168}


def ceil_div(a, b):
    return -(-a // b)


def small_arch(**overrides):
    arch = dict(stem_channels=(16, 16), depths=(1, 1, 2, 1), channels=(16, 32, 64, 64))
    arch.update(overrides)
    return arch


def feature_shapes(model, h, w, batch=1):
    model.eval()
    with torch.no_grad():
        outs = model(torch.randn(batch, 3, h, w))
    assert all(o.is_contiguous() for o in outs)  # plain NCHW for any neck, whatever runs inside
    return [tuple(o.shape) for o in outs]


@pytest.mark.parametrize('arch', sorted(ARCH_SETTINGS))
def test_paper_arch_shapes_at_224(arch):
    model = CoAtNet(arch=arch)
    channels = ARCH_SETTINGS[arch]['channels']
    assert model.out_channels == list(channels)
    assert feature_shapes(model, 224, 224) == [(1, c, 224 // s, 224 // s)
                                                for c, s in zip(channels, STRIDES)]


@pytest.mark.parametrize('size', [(800, 1333), (333, 517)])
def test_coatnet0_shapes_at_detection_sizes(size):
    model = CoAtNet(arch='coatnet-0')
    h, w = size
    assert feature_shapes(model, h, w) == [
        (1, c, ceil_div(h, s), ceil_div(w, s)) for c, s in zip((96, 192, 384, 768), STRIDES)]


@pytest.mark.parametrize('arch', sorted(PAPER_PARAMS_M))
def test_param_counts_match_the_paper(arch):
    model = CoAtNet(arch=arch)
    backbone = sum(p.numel() for p in model.parameters())
    width = ARCH_SETTINGS[arch]['channels'][-1]
    with_head = backbone + width * 1000 + 1000
    print(f'{arch}: backbone {backbone / 1e6:.2f}M, with 1000-class head {with_head / 1e6:.2f}M, '
          f'paper {PAPER_PARAMS_M[arch]}M')
    assert abs(with_head / 1e6 - PAPER_PARAMS_M[arch]) / PAPER_PARAMS_M[arch] < 0.05


def test_relative_bias_tables_sized_for_the_pretraining_image():
    model = CoAtNet(arch='coatnet-0', pretrain_img_size=224)
    s3, s4 = model.stages[2].blocks[0].attn.rel_pos, model.stages[3].blocks[0].attn.rel_pos
    assert s3.table.shape == (12, 27, 27) and s4.table.shape == (24, 13, 13)
    model = CoAtNet(arch=small_arch(), pretrain_img_size=(384, 256))
    assert model.stages[2].blocks[1].attn.rel_pos.table.shape[-2:] == (47, 31)


def test_out_indices_select_stages():
    model = CoAtNet(arch=small_arch(), out_indices=(1, 3))
    assert model.out_channels == [32, 64]
    assert feature_shapes(model, 64, 96) == [(1, 32, 8, 12), (1, 64, 2, 3)]


def test_unknown_arch_lists_the_known_ones():
    with pytest.raises(ValueError, match='coatnet-0.*coatnet-4'):
        CoAtNet(arch='coatnet-9')


def test_custom_arch_dict_needs_depths_and_channels():
    with pytest.raises(ValueError, match='depths'):
        CoAtNet(arch=dict(channels=(16, 32, 64, 64)))


@pytest.mark.parametrize('shape, message', [
    ((3, 64, 64), '4-D'),
    ((1, 1, 64, 64), 'built for 3 input channels'),
    ((1, 3, 31, 64), 'at least 32'),
    ((1, 3, 64, 16), 'at least 32'),
])
def test_bad_input_names_expected_and_received_shape(shape, message):
    model = CoAtNet(arch=small_arch()).eval()
    with pytest.raises(ValueError, match=message) as error:
        model(torch.randn(*shape))
    assert str(tuple(shape)) in str(error.value)


def test_smallest_input_runs():
    assert feature_shapes(CoAtNet(arch=small_arch()), 32, 33)[-1] == (1, 64, 1, 2)


def test_drop_path_rises_linearly_over_blocks():
    model = CoAtNet(arch=small_arch(), drop_path_rate=0.5)
    rates = [getattr(block.drop_path, 'drop_prob', 0.0)
             for stage in model.stages for block in stage.blocks]
    assert rates == pytest.approx(torch.linspace(0, 0.5, 5).tolist())


def one_training_step(model, size=(64, 64)):
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    loss = sum(o.square().mean() for o in model(torch.randn(2, 3, *size)))
    loss.backward()
    optimizer.step()
    return loss


def test_frozen_stages_keep_parameters_and_statistics():
    model = CoAtNet(arch=small_arch(), frozen_stages=1)
    model.init_weights()
    frozen = {k: v.clone() for k, v in model.state_dict().items()
              if k.startswith(('stem.', 'stages.0.'))}
    trainable = {k: v.clone() for k, v in model.state_dict().items() if k.startswith('stages.1.')}
    assert not any(p.requires_grad for p in model.stem.parameters())  # already in __init__
    assert not any(p.requires_grad for p in model.stages[0].parameters())
    one_training_step(model)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items())
    assert any(not torch.equal(state[k], v) for k, v in trainable.items())
    assert not model.stem.training and not model.stages[0].training and model.stages[1].training


def test_norm_eval_keeps_batchnorm_statistics():
    model = CoAtNet(arch=small_arch(), norm_eval=True)
    stats = {k: v.clone() for k, v in model.state_dict().items() if 'running_' in k}
    one_training_step(model)
    state = model.state_dict()
    assert stats and all(torch.equal(state[k], v) for k, v in stats.items())
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))


def test_with_cp_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = CoAtNet(arch=small_arch())
    checkpointed = copy.deepcopy(plain)
    for stage in checkpointed.stages:
        stage.with_cp = True
    x = torch.randn(2, 3, 64, 80)
    grads = []
    for model in (plain, checkpointed):
        model.train()
        sum(o.square().mean() for o in model(x)).backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)
    # the recompute in backward runs BatchNorm in training mode again: statistics move once
    buffers = [dict(model.named_buffers()) for model in (plain, checkpointed)]
    assert buffers[1]['stages.0.blocks.0.norm1.num_batches_tracked'] == 1
    for name, buffer in buffers[0].items():
        torch.testing.assert_close(buffers[1][name], buffer, msg=name)


def test_gradients_reach_bias_tables_at_a_non_pretraining_size():
    model = CoAtNet(arch=small_arch(), pretrain_img_size=224).train()
    sum(o.sum() for o in model(torch.randn(1, 3, 96, 160))).backward()
    tables = [m.table for m in model.modules() if hasattr(m, 'table')]
    assert tables and all(t.grad is not None and t.grad.abs().sum() > 0 for t in tables)


def test_syncbn_config_builds_and_runs_in_eval():
    model = CoAtNet(arch=small_arch(), norm_cfg=dict(type='SyncBN', requires_grad=True))
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    assert feature_shapes(model, 64, 64)[0] == (1, 16, 16, 16)


def test_windowed_s3_equals_global_when_one_window_covers_the_map():
    torch.manual_seed(0)
    global_model = CoAtNet('coatnet-0-rw').eval()
    windowed = CoAtNet('coatnet-0-rw', window_attention=dict()).eval()
    assert windowed.load_state_dict(global_model.state_dict()) is not None  # same parameters
    windows = [getattr(b.attn, 'window_size', None) for b in windowed.stages[2].blocks]
    assert windows == [None, (14, 14), (14, 14), None, (14, 14), (14, 14), None]
    x = torch.randn(1, 3, 224, 224)  # S3 is 14x14: a single window
    with torch.no_grad():
        for a, b in zip(global_model(x), windowed(x)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        larger = torch.randn(1, 3, 320, 288)  # 20x18: windows with padding now differ
        assert not torch.allclose(global_model(larger)[2], windowed(larger)[2], atol=1e-3)


def test_windowed_s3_trains_at_odd_sizes_and_checks_its_options():
    model = CoAtNet(small_arch(depths=(1, 1, 3, 1)), pretrain_img_size=64,
                    window_attention=dict(window_size=3, global_blocks=[2])).train()
    windows = [getattr(b.attn, 'window_size', None) for b in model.stages[2].blocks]
    assert windows == [(3, 3), (3, 3), None]
    outs = model(torch.randn(2, 3, 97, 75))
    assert [tuple(o.shape[-2:]) for o in outs] == [(25, 19), (13, 10), (7, 5), (4, 3)]
    sum(o.sum() for o in outs).backward()
    assert all(b.attn.rel_pos.table.grad.abs().sum() > 0 for b in model.stages[2].blocks)
    with pytest.raises(ValueError, match='unknown keys'):
        CoAtNet(small_arch(), window_attention=dict(window=7))
    with pytest.raises(ValueError, match='not S3 blocks'):
        CoAtNet(small_arch(), window_attention=dict(global_blocks=[5]))
    with pytest.raises(ValueError, match='transformer S3'):
        CoAtNet(small_arch(block_types=('C', 'C', 'C', 'T')), window_attention=dict())
