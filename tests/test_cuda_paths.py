"""The choices a GPU makes, run on the CPU: inside ``kernels_chosen_for('cuda')`` the attention
chooses its kernels as on a GPU (FlexAttention allowed in training), against the reference
attention, with gradients and under float16 / bfloat16 autocast. No GPU should be the first to run
a branch. FlexAttention's training, CUDA's default, has no CPU backward: the SDPA kernels a GPU
takes where FlexAttention cannot run (``attention_impl='sdpa'``, torch < 2.6) run here, and
``make gpu-check``'s kernels section runs FlexAttention's on a card."""
import copy

import pytest
import torch

from mmcoatnet.models import CoAtNet
from mmcoatnet.models.attention import RelativeAttention, RelativePositionBias, RelativePositionMlp
from mmcoatnet.models.kernels import kernels_chosen_for, read_torch_state, select_kernel
from mmcoatnet.models.reference import ReferenceRelativeAttention
from mmcoatnet.torch_compat import FLEX_ATTENTION_TRAINING

from helpers import kernels_that_ran, needs_torch

CHUNK_OF_3_ROWS = 2 * 2 * 7 * 63 * 4 * 3  # batch 2, 2 heads, 3 rows of a 9x7 map
PATHS = ['chunked', 'dense', 'padded windows']


def gpu_attention(path: str, rel_pos: str = 'table') -> RelativeAttention:
    # no dropout in the MLP: the reference must see the same bias
    provider = (RelativePositionBias(2, (4, 4)) if rel_pos == 'table'
                else RelativePositionMlp(2, 16, dropout=0.))
    attn = RelativeAttention(32, 48, 64, 32, provider, impl='sdpa',
                             max_bias_bytes=CHUNK_OF_3_ROWS if path == 'chunked' else 64 << 20)
    return attn.train()


def padding_for(path: str):
    if path != 'padded windows':
        return None
    padding = torch.zeros(2, 63, dtype=torch.bool)
    padding[:, -10:] = True
    return padding


def test_kernels_are_chosen_for_the_named_device_type():
    attn = gpu_attention('chunked')
    attn.impl = 'flex'
    x = torch.randn(2, 9, 7, 32)
    with kernels_chosen_for('cuda'):
        state = read_torch_state()
        assert state.device_type == 'cuda' and state.grad
        # GPUs have FlexAttention's backward: training takes it there
        assert select_kernel(attn.kernel_context(x, False, state)) == 'flex'
    assert read_torch_state().device_type is None  # the input's device again
    assert kernels_that_ran(lambda: attn(x)) == ['chunked']  # no CPU backward: the chunks


@needs_torch(FLEX_ATTENTION_TRAINING, "FlexAttention's training on CUDA")
def test_the_default_attention_takes_flex_attention_on_cuda_only():
    """attention_impl='auto' and no budget, as a backbone builds it: FlexAttention on CUDA in
    training with this torch (>= 2.6), the chunks on the CPU."""
    attn = RelativeAttention(32, 48, 64, 32, RelativePositionBias(2, (4, 4))).train()
    x = torch.randn(2, 9, 7, 32)
    with kernels_chosen_for('cuda'):
        assert select_kernel(attn.kernel_context(x, False, read_torch_state())) == 'flex'
    assert select_kernel(attn.kernel_context(x, False, read_torch_state())) == 'dense'


@pytest.mark.parametrize('rel_pos', ['table', 'mlp'])
@pytest.mark.parametrize('path', PATHS)
def test_gpu_choices_equal_reference_with_gradients_to_the_tables(path, rel_pos):
    torch.manual_seed(0)
    attn = gpu_attention(path, rel_pos)
    x = torch.randn(2, 9, 7, 32, requires_grad=True)
    padding = padding_for(path)
    with kernels_chosen_for('cuda'):
        ran = kernels_that_ran(lambda: attn(x, key_padding_mask=padding))
        out = attn(x, key_padding_mask=padding)
    assert ran == ['chunked-sdpa' if path == 'chunked' else 'dense']  # SDPA only
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
def test_gpu_choices_under_autocast_match_float32_reference(path, dtype):
    """AMP as a GPU runs it (float16, or bfloat16): the half-precision result and the table's
    gradient agree with the float32 reference to half-precision accuracy."""
    torch.manual_seed(0)
    attn = gpu_attention(path)
    x = torch.randn(2, 9, 7, 32)
    padding = padding_for(path)
    with torch.autocast('cpu', dtype=dtype), kernels_chosen_for('cuda'):
        out = attn(x, key_padding_mask=padding)
    assert out.dtype == dtype
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
    # one map row a chunk
    backbone = CoAtNet(arch='coatnet-pico', out_indices=(0, 1, 2, 3), attention_impl='sdpa',
                       attention_max_bias_bytes=1).train()
    reference = copy.deepcopy(backbone)
    for block in [b for b in reference.modules() if isinstance(getattr(b, 'attn', None),
                                                                RelativeAttention)]:
        block.attn = ReferenceRelativeAttention(block.attn)
    x = torch.randn(2, 3, 96, 128)
    with kernels_chosen_for('cuda'):
        assert set(kernels_that_ran(lambda: backbone(x))) == {'chunked-sdpa'}
        outs = backbone(x)
    expected = reference(x)
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
    with torch.autocast('cpu', dtype=torch.float16), kernels_chosen_for('cuda'):
        half_outs = backbone(x.half())
    assert all(o.dtype == torch.float16 and torch.isfinite(o).all() for o in half_outs)
    with pytest.raises(TypeError, match='under torch.autocast'):
        backbone(x.half())  # without autocast the dtypes must agree
