import copy

import pytest
import torch
import torch.nn as nn

from mmcoatnet.models.norm_act import norm_act


def saved_bytes(fn):
    """Bytes autograd keeps for backward while running ``fn`` (each storage once)."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(storages.values())


@pytest.mark.parametrize('act', [nn.SiLU(), nn.GELU()], ids=['silu', 'gelu'])
@pytest.mark.parametrize('momentum', [0.1, None])
def test_fused_equals_modules_in_output_gradients_and_statistics(act, momentum):
    torch.manual_seed(0)
    norm = nn.BatchNorm2d(8, momentum=momentum)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    twin = copy.deepcopy(norm)
    x = torch.randn(3, 8, 5, 7, requires_grad=True)
    grad = torch.randn(3, 8, 5, 7)
    for _ in range(2):  # twice: the running averages and the step counter must agree too
        fused = norm_act(norm, act, x)
        (fused * grad).sum().backward()
        fused_grads = [t.grad.clone() for t in (x, norm.weight, norm.bias)]
        for t in (x, norm.weight, norm.bias, twin.weight, twin.bias):
            t.grad = None
        plain = act(twin(x))
        (plain * grad).sum().backward()
        torch.testing.assert_close(fused, plain)
        for got, want in zip(fused_grads, (x.grad, twin.weight.grad, twin.bias.grad)):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        x.grad = None
    for name in ('running_mean', 'running_var', 'num_batches_tracked'):
        torch.testing.assert_close(getattr(norm, name), getattr(twin, name), msg=name)


def test_fused_keeps_one_map_instead_of_two():
    norm, act = nn.BatchNorm2d(16), nn.SiLU()
    x = torch.randn(2, 16, 32, 32, requires_grad=True)
    one_map = x.numel() * 4
    _, plain = saved_bytes(lambda: act(norm(x)))
    _, fused = saved_bytes(lambda: norm_act(norm, act, x))
    assert plain >= 2 * one_map and fused < 1.1 * one_map


def test_other_norms_and_modes_run_the_modules_unchanged():
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    group_norm, silu = nn.GroupNorm(2, 4), nn.SiLU()
    torch.testing.assert_close(norm_act(group_norm, silu, x), silu(group_norm(x)))
    bn = nn.BatchNorm2d(4).eval()
    torch.testing.assert_close(norm_act(bn, silu, x), silu(bn(x)))
    torch.testing.assert_close(norm_act(bn.train(), nn.Identity(), x), bn(x))
    assert int(bn.num_batches_tracked) == 2  # counted once per call, as the module counts


def test_a_gate_before_the_norm_is_folded_in_with_its_gradient():
    torch.manual_seed(0)
    norm, act = nn.BatchNorm2d(16), nn.SiLU()
    twin = copy.deepcopy(norm)
    x = torch.randn(2, 16, 24, 20, requires_grad=True)
    gate = torch.rand(2, 16, 1, 1, requires_grad=True)
    grad = torch.randn(2, 16, 24, 20)
    out, kept = saved_bytes(lambda: norm_act(norm, act, x, scale=gate))
    (out * grad).sum().backward()
    fused = [t.grad.clone() for t in (x, gate, norm.weight)]
    x.grad = gate.grad = None
    expected = act(twin(x * gate))
    (expected * grad).sum().backward()
    torch.testing.assert_close(out, expected)
    for got, want in zip(fused, (x.grad, gate.grad, twin.weight.grad)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert kept < 1.1 * x.numel() * 4  # neither x * gate nor the normalised map is kept
