"""float16 with trained-like magnitudes: every attention path (whole bias, chunked inference,
chunked training, padded windows, the exported graph's) under float16 autocast and in a model cast
to half gives finite outputs close to float32's, with weights scaled until the float32 logits reach
2e4, where the product taken before its 1/√d scaling (1.1e5 for head size 32) overflows float16
(65504): the kernels scale q first and take the softmax in float32."""
import pytest
import torch

from mmcoatnet.models.attention import RelativeAttention, RelativePositionBias
from mmcoatnet.models.kernels import graph_attention
from mmcoatnet.models.rel_pos import gather_relative_bias

SIZE = (6, 5)
LOGIT = 2e4
# float16 keeps 11 bits: outputs within 1% of their largest float32 value (measured: under 0.3%)
TOLERANCE = 1e-2


def scaled_attention(seed=0):
    """A layer whose q·kᵀ / √d reaches about LOGIT on the test input, in float32."""
    torch.manual_seed(seed)
    attn = RelativeAttention(64, 64, 64, 32, RelativePositionBias(2, SIZE))
    x = torch.randn(2, *SIZE, 64)
    with torch.no_grad():
        q, k, _ = attn.qkv(x).view(2, -1, 2, 3, 32).permute(3, 0, 2, 1, 4).unbind(0)
        largest = (q @ k.transpose(-2, -1) * 32 ** -0.5).abs().max()
        # q and k both scale with the qkv weights: logits with its square
        factor = float((LOGIT / largest) ** 0.5)
        attn.qkv.weight[:128].mul_(factor)
        attn.qkv.bias[:128].mul_(factor)
        attn.rel_pos.table.normal_(0, 1)  # a trained table's spread, not the initial 0.02
    return attn, x


def run(attn, x, path, mask=None):
    if path == 'chunked inference':
        attn.max_bias_bytes = 1  # every row a chunk
    if path == 'traced':
        q, k, v = attn.qkv(x).view(2, -1, 2, 3, 32).permute(3, 0, 2, 1, 4).unbind(0)
        out = graph_attention(q, k, v, attn.rel_pos.table_at(SIZE, traceable=True), SIZE, 'jit')
        return attn.proj(out.transpose(1, 2).reshape(2, *SIZE, 64))
    return attn(x, key_padding_mask=mask)


PATHS = ['whole bias', 'chunked inference', 'chunked training', 'padded windows', 'traced']


def logits_reach_the_target(attn, x):
    with torch.no_grad():
        q, k, _ = attn.qkv(x).view(2, -1, 2, 3, 32).permute(3, 0, 2, 1, 4).unbind(0)
        logits = q @ k.transpose(-2, -1) * 32 ** -0.5 + gather_relative_bias(
            attn.rel_pos.table, SIZE)
    return 0.5 * LOGIT < logits.abs().max() < 2 * LOGIT


@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('how', ['autocast', 'half model'])
def test_float16_attention_is_finite_and_close_to_float32(path, how):
    attn, x = scaled_attention()
    assert logits_reach_the_target(attn, x)
    mask = None
    if path == 'padded windows':
        mask = torch.zeros(2, SIZE[0] * SIZE[1], dtype=torch.bool)
        mask[:, -SIZE[1]:] = True  # the last map row is window padding
    training = path == 'chunked training'
    attn.train(training)
    if training:
        attn.max_bias_bytes = 1
    with torch.set_grad_enabled(training):
        expected = run(attn, x, path, mask).float()
        if how == 'autocast':
            with torch.autocast('cpu', dtype=torch.float16):
                got = run(attn, x, path, mask)
        else:
            got = run(attn.half(), x.half(), path, mask)
    assert got.dtype == torch.float16
    assert torch.isfinite(got).all(), f'{path}, {how}: non-finite output'
    error = (got.float() - expected).abs().max() / expected.abs().max()
    assert error < TOLERANCE, (path, how, float(error))
    if training:
        got.float().square().mean().backward()
        grads = [p.grad for p in attn.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), path


def test_the_control_the_product_before_scaling_overflows_float16():
    """What the kernels avoid, on the same layer: q kᵀ in float16, then scaled, is infinite."""
    attn, x = scaled_attention()
    with torch.no_grad():
        q, k, _ = attn.half().qkv(x.half()).view(2, -1, 2, 3, 32).permute(3, 0, 2, 1, 4).unbind(0)
        assert not torch.isfinite(q @ k.transpose(-2, -1) * 32 ** -0.5).all()
        assert torch.isfinite((q * 32 ** -0.5) @ k.transpose(-2, -1)).all()
