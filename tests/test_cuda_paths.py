"""The branches a GPU takes, run on the CPU: attention chooses its kernels for the device type
``kernel_device_type`` names (None: the input's), so setting it to 'cuda' runs the GPU choices here
(SDPA in every chunk, FlexAttention allowed in training), against the reference attention, with
gradients and under float16 / bfloat16 autocast. No GPU should be the first to run a branch."""
import copy

import pytest
import torch
import torch.nn.functional as F

import mmcoatnet.models.attention as attention
from mmcoatnet.models import CoAtNet
from mmcoatnet.models.attention import (
    RelativeAttention,
    RelativePositionBias,
    RelativePositionMlp,
    explicit_softmax_by_default,
)
from mmcoatnet.models.reference import ReferenceRelativeAttention

CHUNK_OF_3_ROWS = 2 * 2 * 7 * 63 * 4 * 3  # batch 2, 2 heads, 3 rows of a 9x7 map
PATHS = ['chunked', 'whole-bias', 'padded windows']


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the SDPA and explicit-softmax calls, still running them."""
    calls = dict(sdpa=0, explicit=0)
    sdpa, explicit = F.scaled_dot_product_attention, attention._explicit_attention

    def counted_sdpa(*args, **kwargs):
        calls['sdpa'] += 1
        return sdpa(*args, **kwargs)

    def counted_explicit(*args, **kwargs):
        calls['explicit'] += 1
        return explicit(*args, **kwargs)

    monkeypatch.setattr(attention.F, 'scaled_dot_product_attention', counted_sdpa)
    monkeypatch.setattr(attention, '_explicit_attention', counted_explicit)
    return calls


def gpu_attention(path: str, rel_pos: str = 'table') -> RelativeAttention:
    # no dropout in the MLP: the reference must see the same bias
    provider = (RelativePositionBias(2, (4, 4)) if rel_pos == 'table'
                else RelativePositionMlp(2, 16, dropout=0.))
    attn = RelativeAttention(32, 48, 64, 32, provider,
                             max_bias_bytes=CHUNK_OF_3_ROWS if path == 'chunked' else 64 << 20)
    attn.kernel_device_type = 'cuda'
    return attn.train()


def padding_for(path: str):
    if path != 'padded windows':
        return None
    padding = torch.zeros(2, 63, dtype=torch.bool)
    padding[:, -10:] = True
    return padding


def test_kernel_choices_follow_the_named_device_type():
    attn = gpu_attention('chunked')
    x = torch.randn(2, 9, 7, 32)
    assert attn.kernel_device(x).type == 'cuda'
    attn.impl = 'flex'  # GPUs have FlexAttention's backward: training takes it there
    assert attn.choose_kernel(2, (9, 7), attn.kernel_device(x), masked=False) == 'flex'
    attn.kernel_device_type = None  # the input's device: no CPU backward, so the chunks
    assert attn.choose_kernel(2, (9, 7), attn.kernel_device(x), masked=False) == 'chunked'
    assert not explicit_softmax_by_default(torch.device('cuda'))
    assert explicit_softmax_by_default(torch.device('cpu'))


@pytest.mark.parametrize('rel_pos', ['table', 'mlp'])
@pytest.mark.parametrize('path', PATHS)
def test_gpu_branch_equals_reference_with_gradients_to_the_tables(path, rel_pos, kernel_calls):
    torch.manual_seed(0)
    attn = gpu_attention(path, rel_pos)
    x = torch.randn(2, 9, 7, 32, requires_grad=True)
    padding = padding_for(path)
    out = attn(x, key_padding_mask=padding)
    assert kernel_calls == dict(sdpa=3 if path == 'chunked' else 1, explicit=0)  # SDPA only
    weights = torch.randn_like(out)
    params = dict(attn.named_parameters())
    grads = torch.autograd.grad((out * weights).sum(), [x, *params.values()])
    expected = ReferenceRelativeAttention(attn)(x, key_padding_mask=padding)
    expected_grads = torch.autograd.grad((expected * weights).sum(), [x, *params.values()])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    for name, grad, expected_grad in zip(['x', *params], grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, atol=1e-4, rtol=1e-4, msg=name)
    bias_grads = [g for name, g in zip(['x', *params], grads) if name.startswith('rel_pos')]
    assert bias_grads and all(g.abs().sum() > 0 for g in bias_grads)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16], ids=['float16', 'bfloat16'])
@pytest.mark.parametrize('path', PATHS)
def test_gpu_branch_under_autocast_matches_float32_reference(path, dtype, kernel_calls):
    """AMP as a GPU runs it (float16, or bfloat16): the half-precision result and the table's
    gradient agree with the float32 reference to half-precision accuracy."""
    torch.manual_seed(0)
    attn = gpu_attention(path)
    x = torch.randn(2, 9, 7, 32)
    padding = padding_for(path)
    with torch.autocast('cpu', dtype=dtype):
        out = attn(x, key_padding_mask=padding)
    assert out.dtype == dtype and kernel_calls['explicit'] == 0
    weights = torch.randn(out.shape)
    (table_grad,) = torch.autograd.grad((out.float() * weights).sum(), [attn.rel_pos.table])
    expected = ReferenceRelativeAttention(attn)(x, key_padding_mask=padding)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), [attn.rel_pos.table])
    tolerance = 2e-2 if dtype == torch.bfloat16 else 4e-3
    torch.testing.assert_close(out.float(), expected, atol=tolerance, rtol=tolerance)
    assert torch.isfinite(table_grad).all()
    assert (table_grad - expected_grad).norm() <= 5 * tolerance * expected_grad.norm()


def test_backbone_with_gpu_choices_equals_reference_backbone():
    """The whole backbone, every attention forced to the GPU choices and chunked, against the
    same weights run through the reference attention: maps and table gradients; then under
    float16 autocast with a float16 input, which the backbone's input check lets through."""
    torch.manual_seed(0)
    backbone = CoAtNet(arch='coatnet-pico', out_indices=(0, 1, 2, 3)).train()
    reference = copy.deepcopy(backbone)
    for module in backbone.modules():
        if isinstance(module, RelativeAttention):
            module.kernel_device_type = 'cuda'
            module.max_bias_bytes = 1  # one map row a chunk
    for block in [b for b in reference.modules() if isinstance(getattr(b, 'attn', None),
                                                                RelativeAttention)]:
        block.attn = ReferenceRelativeAttention(block.attn)
    x = torch.randn(2, 3, 96, 128)
    outs, expected = backbone(x), reference(x)
    for out, exp in zip(outs, expected):
        torch.testing.assert_close(out, exp, atol=1e-4, rtol=1e-4)
    tables = [n for n, _ in backbone.named_parameters() if n.endswith('rel_pos.table')]
    assert tables
    grads = torch.autograd.grad(sum(o.square().mean() for o in outs),
                                [dict(backbone.named_parameters())[n] for n in tables])
    expected_grads = torch.autograd.grad(sum(o.square().mean() for o in expected),
                                         [dict(reference.named_parameters())[n.replace(
                                             '.attn.', '.attn.attn.')] for n in tables])
    for name, grad, expected_grad in zip(tables, grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, atol=1e-4, rtol=1e-3, msg=name)
    with torch.autocast('cpu', dtype=torch.float16):
        half_outs = backbone(x.half())
    assert all(o.dtype == torch.float16 and torch.isfinite(o).all() for o in half_outs)
    with pytest.raises(TypeError, match='under torch.autocast'):
        backbone(x.half())  # without autocast the dtypes must agree
