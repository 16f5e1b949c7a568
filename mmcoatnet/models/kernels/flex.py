"""The flex kernel: FlexAttention (compiled) reading the bias from the (heads, 2H-1, 2W-1) table
inside the kernel, so no N x N bias exists (docs/architecture.md#flexattention)."""
import torch
import torch.nn.functional as F

from ..rel_pos import Size

_compiled_flex_attention = None
FLEX_BLOCK_TOKENS = 128  # FlexAttention's default block size
# compiles of FlexAttention allowed (one per bucket, head count, batch): multi-scale training meets
# more than dynamo's default 8, past which it would run FlexAttention uncompiled, N x N unfused
FLEX_COMPILES_ALLOWED = 64


def flex_token_bucket(tokens: int) -> int:
    """The token count FlexAttention runs at: a multiple of its block, in steps of a quarter of the
    octave above 1024 tokens, so that padding adds at most 25% of the tokens (1.56x the attention
    work; powers of two added up to 4x) for 4 compiles an octave."""
    octave_top = 1 << max(tokens - 1, 0).bit_length()
    step = max(FLEX_BLOCK_TOKENS, octave_top // 8)
    return -(-max(tokens, 1) // step) * step


def padded_flat_offset_indices(feat_size: Size, padded: int, device=None):
    """(query_index, key_index), each of ``padded`` >= H*W tokens, such that the flattened table's
    entry for query i and key j is at ``query_index[i] - key_index[j]``. Tokens past H*W (padding)
    get indices that stay inside the table (key 0, query at offset zero), so a kernel that reads
    them for masked-out scores never reads outside it."""
    height, width = feat_size
    tokens = height * width
    positions = torch.arange(tokens, device=device)
    key_index = (positions // width) * (2 * width - 1) + positions % width
    zero_offset = (height - 1) * (2 * width - 1) + width - 1
    query_index = F.pad(key_index + zero_offset, (0, padded - tokens), value=zero_offset)
    return query_index, F.pad(key_index, (0, padded - tokens))


def fused_flex_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         flat_table: torch.Tensor, query_index: torch.Tensor,
                         key_index: torch.Tensor, valid_keys: torch.Tensor) -> torch.Tensor:
    """Compiled FlexAttention over bucket-padded (B, heads, bucket, d) q, k, v: the score_mod adds
    ``flat_table[head, query_index[query] - key_index[key]]`` and masks keys from ``valid_keys`` on.
    The memory simulation puts a stand-in of its memory in its place (FlexAttention does not run on
    fake tensors): mmcoatnet/analysis/attention_simulation.py."""
    global _compiled_flex_attention
    from torch.nn.attention.flex_attention import flex_attention
    if _compiled_flex_attention is None:
        _compiled_flex_attention = torch.compile(flex_attention, dynamic=False)

    def add_relative_bias(score, batch, head, query, key):
        bias = flat_table[head, query_index[query] - key_index[key]]
        return torch.where(key < valid_keys, score + bias, float('-inf'))

    limit = max(FLEX_COMPILES_ALLOWED, torch._dynamo.config.cache_size_limit)
    with torch._dynamo.config.patch(cache_size_limit=limit):  # the name from torch 2.5 on
        return _compiled_flex_attention(q, k, v, score_mod=add_relative_bias)


# Outside a compiled model's graph (a graph break): the bucket is a Python int taken from the size,
# which would make the model's graph recompile per size; FlexAttention compiles per bucket.
@torch.compiler.disable
def flex_relative_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            table: torch.Tensor, feat_size: Size) -> torch.Tensor:
    """Attention whose bias is read from the (heads, 2H-1, 2W-1) table inside the kernel
    (FlexAttention's ``score_mod``, compiled): no N x N bias exists, and where FlexAttention has a
    backward (GPUs from torch 2.6, not CPUs) gradients reach the table through it.

    The kernel compiles once per token bucket (:func:`flex_token_bucket`), not per feature size:
    tokens are padded to the bucket, padded keys masked out (-inf) and padded queries dropped, and
    the sizes reach the score_mod only as tensors of bucket shapes, since a Python int there would
    be a constant of the compiled kernel (dynamic=True fails to build on CPUs:
    docs/torch-compile.md)."""
    tokens = int(q.shape[-2])
    padded = flex_token_bucket(tokens)
    q, k, v = (F.pad(t, (0, 0, 0, padded - tokens)) for t in (q, k, v))
    query_index, key_index = padded_flat_offset_indices(feat_size, padded, q.device)
    flat_table = F.pad(table.flatten(1), (0, 4 * padded - table[0].numel()))  # (2H-1)(2W-1) < 4HW
    valid_keys = torch.tensor(tokens, device=q.device)
    return fused_flex_attention(q, k, v, flat_table, query_index, key_index,
                                valid_keys)[:, :, :tokens]
