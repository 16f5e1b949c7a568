"""Global multi-head self-attention with CoAtNet's relative position bias, and the two providers of
that bias: a learned table (resized for other sizes) and timm's relative-position MLP."""
import math
from collections import OrderedDict
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.model.weight_init import trunc_normal_

from ..torch_compat import FLEX_ATTENTION, is_compiling, is_exporting, require_torch
from .archs import TransformerOptions
from .rel_pos import (
    Size,
    add_rows_bias_grad,
    gather_relative_bias,
    gather_relative_bias_by_offsets,
    gather_rows_bias_by_offsets,
    interpolate_bias_table,
    log_relative_coords,
    padded_flat_offset_indices,
    relative_bias_rows_keys_reversed,
    resize_bias_table,
    reverse_key_rows,
    table_size,
    toeplitz_blocks,
    toeplitz_blocks_by_offsets,
    toeplitz_blocks_grad,
)


def exporting() -> bool:
    """Whether the model is being traced for export (torch.jit.trace, torch.onnx's TorchScript
    exporter, torch.export and so torch.onnx's dynamo exporter): sizes are then graph values
    (0-dim tensors or symbolic ints), and anything turned into a Python int or tested would be
    baked in."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or is_exporting()


def symbolic_or_int_size(feat_size: Size) -> Size:
    """(H, W) as Python ints, except under torch.compile: there int() would turn symbolic sizes
    into constants, one recompilation per feature size."""
    if is_compiling():
        return tuple(feat_size)
    return int(feat_size[0]), int(feat_size[1])


class CachedBiasProvider(nn.Module):
    """Gives, for a feature size, the (heads, 2H-1, 2W-1) table (``table_at``) or the whole
    (heads, HW, HW) bias gathered from it (``forward``); subclasses make the table (``table_for``).

    In eval mode without autograd, recent sizes are cached: the table always, the whole bias only
    while it is at most ``max_cached_bias_bytes``, so detection resolutions do not keep a whole
    bias per layer. The key holds the parameters' version counters, so an optimizer step or a
    loaded checkpoint never serves a stale bias. In training nothing is kept: gradients must reach
    the parameters at every step.
    """

    def __init__(self, num_heads: int, cache_size: int = 8, max_cached_bias_bytes: int = 32 << 20):
        super().__init__()
        self.num_heads = num_heads
        self.cache_size = cache_size
        self.max_cached_bias_bytes = max_cached_bias_bytes
        self._cache: 'OrderedDict[tuple, dict]' = OrderedDict()

    def table_for(self, feat_size: Size) -> torch.Tensor:
        raise NotImplementedError

    def table_in_graph(self, feat_size: Size) -> torch.Tensor:
        """``table_for`` with no size test or cache: traceable with graph-valued sizes."""
        return self.table_for(feat_size)

    def _cache_entry(self, feat_size: Size) -> Optional[dict]:
        """The cache slot for this size, or None when caching is not allowed now."""
        if is_compiling():  # a size in a dict key would specialise the graph on it
            return None
        needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        if self.training or needs_grad:
            self._cache.clear()
            return None
        first = next(self.parameters())
        key = (feat_size, first.device, first.dtype, tuple(p._version for p in self.parameters()))
        entry = self._cache.get(key)
        if entry is None:
            entry = self._cache[key] = dict(table=self.table_for(feat_size).detach())
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return entry

    def table_at(self, feat_size: Size) -> torch.Tensor:
        feat_size = symbolic_or_int_size(feat_size)
        entry = self._cache_entry(feat_size)
        return self.table_for(feat_size) if entry is None else entry['table']

    def forward(self, feat_size: Size) -> torch.Tensor:
        feat_size = symbolic_or_int_size(feat_size)
        entry = self._cache_entry(feat_size)
        if entry is None:
            return gather_relative_bias(self.table_for(feat_size), feat_size)
        if 'bias' in entry:
            return entry['bias']
        bias = gather_relative_bias(entry['table'], feat_size)
        if bias.numel() * bias.element_size() <= self.max_cached_bias_bytes:
            entry['bias'] = bias
        return bias


class RelativePositionBias(CachedBiasProvider):
    """One learned scalar per head and 2-D offset (the paper's w[i - j]).

    The table is learned for ``pretrain_feat_size``; other sizes get it resized (bicubic).
    """

    def __init__(self, num_heads: int, pretrain_feat_size: Size, **cache_args):
        super().__init__(num_heads, **cache_args)
        self.pretrain_feat_size = tuple(pretrain_feat_size)
        self.table = nn.Parameter(torch.zeros(num_heads, *table_size(self.pretrain_feat_size)))
        trunc_normal_(self.table, std=0.02)

    def table_for(self, feat_size: Size) -> torch.Tensor:
        return resize_bias_table(self.table, feat_size)

    def table_in_graph(self, feat_size: Size) -> torch.Tensor:
        return interpolate_bias_table(self.table, feat_size)

    def extra_repr(self) -> str:
        return f'num_heads={self.num_heads}, pretrain_feat_size={self.pretrain_feat_size}'


class RelativePositionMlp(CachedBiasProvider):
    """timm's ``rmlp`` bias: a 2-layer MLP maps log-spaced offsets (dy, dx) to one scalar per head.

    It has no size of its own, so any feature size works without resizing anything.
    """

    def __init__(self, num_heads: int, hidden_dim: int = 512, dropout: float = 0.125, **cache_args):
        super().__init__(num_heads, **cache_args)
        self.mlp = nn.Sequential()
        self.mlp.add_module('fc1', nn.Linear(2, hidden_dim))
        self.mlp.add_module('act', nn.ReLU())
        self.mlp.add_module('drop', nn.Dropout(dropout))
        self.mlp.add_module('fc2', nn.Linear(hidden_dim, num_heads))

    def table_for(self, feat_size: Size) -> torch.Tensor:
        fc1 = self.mlp.fc1.weight
        coords = log_relative_coords(feat_size, device=fc1.device, dtype=fc1.dtype)
        return self.mlp(coords).permute(2, 0, 1)  # (heads, 2H-1, 2W-1)


def build_bias_provider(options: TransformerOptions, num_heads: int,
                        pretrain_feat_size: Size) -> CachedBiasProvider:
    kind = options.rel_pos
    if kind == 'table':
        return RelativePositionBias(num_heads, pretrain_feat_size)
    if kind == 'mlp':
        return RelativePositionMlp(num_heads, options.rel_pos_mlp_dim)
    raise ValueError(f'unknown rel_pos {kind!r}; known: "table", "mlp"')


def _attend_rows(q: torch.Tensor, k_reversed: torch.Tensor, v_reversed: torch.Tensor,
                 table: torch.Tensor, feat_size: Size, row_start: int, row_stop: int,
                 explicit_softmax: bool, blocks: Optional[torch.Tensor] = None,
                 bias_buffer: Optional[torch.Tensor] = None) -> torch.Tensor:
    height, width = feat_size
    if blocks is None:  # only the offsets these rows reach
        blocks = toeplitz_blocks(table[:, row_start:row_stop - 1 + height], width)
        row_start, row_stop = 0, row_stop - row_start
    bias = relative_bias_rows_keys_reversed(blocks, height, row_start, row_stop)
    if explicit_softmax:
        return _explicit_attention(q, k_reversed, v_reversed, bias)
    if bias_buffer is not None:  # reused across chunks: no fresh pages to fault in each time
        bias = bias_buffer[:bias.numel()].view(bias.shape).copy_(bias)
    bias = bias.reshape(bias.shape[0], -1, k_reversed.shape[-2]).to(q.dtype)
    return F.scaled_dot_product_attention(q, k_reversed, v_reversed, attn_mask=bias.unsqueeze(0))


def _explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        bias_rows: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v, the bias given as the (heads, rows, W, H, W) view.

    For CPU training, where a bias that needs a gradient sends SDPA to its slower math fallback;
    this reads the view once, in the add (docs/architecture.md)."""
    dim = q.shape[-1]
    scores = torch.matmul(q * dim ** -0.5, k.transpose(-2, -1))  # (B, heads, queries, keys)
    scores = scores.unflatten(2, bias_rows.shape[1:3]) + bias_rows.flatten(-2)
    return torch.matmul(scores.flatten(2, 3).softmax(dim=-1), v)


def _chunk_probabilities(q_rows: torch.Tensor, k: torch.Tensor, bias_rows: torch.Tensor,
                         buffer: Optional[torch.Tensor] = None) -> torch.Tensor:
    """softmax(q kᵀ / √d + bias) of one chunk of query rows, in float32 at least (half-precision
    logits would overflow), the bias given as the (heads, rows, W, H, W) view. With ``buffer``
    (float32 inputs on a CPU) every step writes into it: a fresh tensor of this size would be
    mapped and page-faulted anew by the allocator at every chunk, which costs more than the
    arithmetic."""
    shape = (*q_rows.shape[:-1], k.shape[-2])
    scaled = q_rows * q_rows.shape[-1] ** -0.5
    if buffer is None:
        scores = torch.matmul(scaled, k.transpose(-2, -1)).float()
    else:
        scores = torch.matmul(scaled, k.transpose(-2, -1),
                              out=buffer[:math.prod(shape)].view(shape))
    scores.unflatten(2, bias_rows.shape[1:3]).add_(bias_rows.flatten(-2))
    if buffer is None:
        return scores.softmax(dim=-1)
    return torch.ops.aten._softmax.out(scores, -1, False, out=scores)  # in place, row by row


class ChunkedAttentionFunction(torch.autograd.Function):
    """Exact softmax(q kᵀ / √d + bias) v over chunks of query map rows, for training, with its own
    backward: nothing N x N is kept between forward and backward (as with recomputation), but the
    backward recomputes only the probabilities, never the output; its softmax gradient takes
    rowsum(dO · O) instead of a pass over the keys; the bias gradient of every chunk adds into one
    (heads, 2H-1, W, W) tensor per layer, folded into the table once (the Toeplitz blocks'
    adjoint) where autograd would unfold-backward every chunk; and the chunks' N-wide tensors are
    written into two buffers reused across chunks. Keys and values come with their map rows
    reversed (:func:`reverse_key_rows`), as the chunk biases are views then."""

    @staticmethod
    def forward(ctx, q, k_reversed, v_reversed, table, height: int, width: int,
                rows_per_chunk: int):
        blocks = toeplitz_blocks(table, width)
        buffer = _chunk_buffer(q, rows_per_chunk * width, k_reversed.shape[-2])
        outs = []
        for start in range(0, height, rows_per_chunk):
            stop = min(start + rows_per_chunk, height)
            probs = _chunk_probabilities(q[:, :, start * width:stop * width], k_reversed,
                                         relative_bias_rows_keys_reversed(blocks, height, start,
                                                                          stop), buffer)
            outs.append(torch.matmul(probs.to(v_reversed.dtype), v_reversed))
        out = torch.cat(outs, dim=2)
        ctx.save_for_backward(q, k_reversed, v_reversed, table, out)
        ctx.layout = (height, width, rows_per_chunk)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, table, out = ctx.saved_tensors
        height, width, rows_per_chunk = ctx.layout
        scale = q.shape[-1] ** -0.5
        blocks = toeplitz_blocks(table, width)
        grad_q = torch.empty_like(q)
        grad_k, grad_v = torch.zeros_like(k), torch.zeros_like(v)
        grad_blocks = table.new_zeros(table.shape[0], 2 * height - 1, width, width)
        buffer = _chunk_buffer(q, rows_per_chunk * width, k.shape[-2])
        grad_buffer = _chunk_buffer(q, rows_per_chunk * width, k.shape[-2])
        # softmax's gradient: p (dp - rowsum(dp p)), and rowsum(dp p) = rowsum(dO O)
        row_dots = (grad_out.float() * out.float()).sum(-1, keepdim=True)
        for start in range(0, height, rows_per_chunk):
            stop = min(start + rows_per_chunk, height)
            rows = slice(start * width, stop * width)
            q_rows, grad_rows = q[:, :, rows], grad_out[:, :, rows]
            probs = _chunk_probabilities(q_rows, k, relative_bias_rows_keys_reversed(
                blocks, height, start, stop), buffer)
            grad_v += torch.matmul(probs.transpose(-2, -1).to(v.dtype), grad_rows)
            if grad_buffer is None:
                grad_scores = torch.matmul(grad_rows, v.transpose(-2, -1)).float()
            else:
                grad_scores = torch.matmul(grad_rows, v.transpose(-2, -1),
                                           out=grad_buffer[:probs.numel()].view(probs.shape))
            grad_scores.sub_(row_dots[:, :, rows]).mul_(probs)  # d(logits), in place
            grad_logits = grad_scores.to(q.dtype)
            grad_q[:, :, rows] = torch.matmul(grad_logits, k).mul_(scale)
            grad_k += torch.matmul(grad_logits.transpose(-2, -1), q_rows).mul_(scale)
            if ctx.needs_input_grad[3]:
                # the bias is shared by the batch: its gradient sums the batch's
                grad_bias = grad_scores[0] if len(grad_scores) == 1 else grad_scores.sum(0)
                add_rows_bias_grad(grad_blocks, grad_bias.unflatten(1, (stop - start, width))
                                   .unflatten(-1, (height, width)).to(table.dtype), start)
        grad_table = toeplitz_blocks_grad(grad_blocks) if ctx.needs_input_grad[3] else None
        return grad_q, grad_k, grad_v, grad_table, None, None, None


def _chunk_buffer(q: torch.Tensor, queries: int, keys: int) -> Optional[torch.Tensor]:
    """One chunk's (B, heads, queries, keys) float32 scores, flat, reused by every chunk of a
    layer; None (each chunk allocates) off the CPU or for half-precision inputs."""
    if q.device.type != 'cpu' or q.dtype != torch.float32:
        return None
    return q.new_empty(q.shape[0] * q.shape[1] * queries * keys)


# Query chunks of the exported graph: its attention holds 1/TRACED_CHUNKS of a layer's N x N
# scores and bias at a time (docs/deployment.md). A fixed count, each chunk ceil(H / TRACED_CHUNKS)
# map rows: the graph stays one graph for every size (trailing chunks of a small map are empty).
TRACED_CHUNKS = 16


def _attend_traced_rows(scaled_q_rows: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        blocks: torch.Tensor, feat_size: Size, rows: torch.Tensor) -> torch.Tensor:
    """One chunk of the exported kernels: the queries of map ``rows`` (already scaled) against
    every key, the bias gathered from the Toeplitz ``blocks``, the softmax in float32."""
    scores = torch.matmul(scaled_q_rows, k.transpose(-2, -1))
    bias = gather_rows_bias_by_offsets(blocks, feat_size, rows)
    probs = (scores + bias.to(scores.dtype)).softmax(dim=-1, dtype=torch.float32)
    return torch.matmul(probs.to(v.dtype), v)


def traced_chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             table: torch.Tensor, feat_size: Size,
                             chunks: int = TRACED_CHUNKS) -> torch.Tensor:
    """softmax(q kᵀ / √d + bias) v in ``chunks`` chunks of query map rows, the bounds and the bias
    of each computed from the sizes as graph values (torch.jit.trace, so the TorchScript ONNX
    exporter; exact). ``table`` is the (heads, 2H-1, 2W-1) table for ``feat_size``."""
    height, width = (torch.as_tensor(side) for side in feat_size)
    blocks = toeplitz_blocks_by_offsets(table, width)
    rows_per_chunk = (height + chunks - 1) // chunks
    scaled = q * q.shape[-1] ** -0.5
    outs = []
    for chunk in range(chunks):
        start = torch.minimum(chunk * rows_per_chunk, height)
        stop = torch.minimum((chunk + 1) * rows_per_chunk, height)
        tokens = torch.arange(start * width, stop * width, device=q.device)
        outs.append(_attend_traced_rows(scaled.index_select(2, tokens), k, v, blocks, feat_size,
                                        torch.arange(start, stop)))
    return torch.cat(outs, dim=2)


def exported_chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                               table: torch.Tensor, feat_size: Size,
                               chunks: int = TRACED_CHUNKS) -> torch.Tensor:
    """:func:`traced_chunked_attention` for torch.export (the dynamo ONNX exporter), whose sizes
    are symbolic ints: the queries padded to ``chunks`` equal chunks (padding rows take the last
    row's bias, their outputs are dropped), so no chunk bound needs a min: min bounds make
    torch.export's symbolic reasoning many times slower (docs/architecture.md)."""
    height, width = feat_size
    blocks = toeplitz_blocks_by_offsets(table, width)
    rows_per_chunk = (height + chunks - 1) // chunks
    scaled = q * q.shape[-1] ** -0.5
    scaled = F.pad(scaled, (0, 0, 0, (rows_per_chunk * chunks - height) * width))
    outs = []
    for chunk in range(chunks):
        start = chunk * rows_per_chunk
        rows = torch.arange(start, start + rows_per_chunk, device=q.device).clamp(max=height - 1)
        outs.append(_attend_traced_rows(scaled.narrow(2, start * width, rows_per_chunk * width),
                                        k, v, blocks, feat_size, rows))
    return torch.cat(outs, dim=2).narrow(2, 0, height * width)


def explicit_softmax_by_default(device: torch.device) -> bool:
    """Whether chunks run as :func:`_explicit_attention` rather than SDPA: on a CPU with autograd,
    where SDPA would take its slow math fallback for a bias that needs a gradient."""
    return device.type == 'cpu' and torch.is_grad_enabled()


def chunked_relative_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                               table: torch.Tensor, feat_size: Size, rows_per_chunk: int,
                               recompute: bool,
                               explicit_softmax: Optional[bool] = None) -> torch.Tensor:
    """Exact attention over query chunks of ``rows_per_chunk`` map rows: memory holds one chunk's
    bias and scores instead of the full N x N ones. With ``recompute`` (training) each chunk is
    recomputed in backward, so nothing N x N is kept for it either. Keys and values are taken in
    reversed row order, which makes each chunk's bias a plain copy of a view of the table.
    ``explicit_softmax``: each chunk as an explicit softmax (True) or through SDPA (False); None
    chooses by device (:func:`explicit_softmax_by_default`)."""
    height, width = feat_size
    if explicit_softmax is None:
        explicit_softmax = explicit_softmax_by_default(q.device)
    k, v = reverse_key_rows(k, feat_size), reverse_key_rows(v, feat_size)
    blocks = bias_buffer = None
    if not torch.is_grad_enabled():  # shared by the chunks; in training each chunk makes its own
        blocks = toeplitz_blocks(table, width)
        rows = min(rows_per_chunk, height)
        bias_buffer = table.new_empty(table.shape[0] * rows * width * height * width)
    if recompute and explicit_softmax:
        return ChunkedAttentionFunction.apply(q, k, v, table, height, width, rows_per_chunk)
    outs = []
    for start in range(0, height, rows_per_chunk):
        stop = min(start + rows_per_chunk, height)
        q_rows = q[:, :, start * width:stop * width]
        if recompute:
            outs.append(cp.checkpoint(_attend_rows, q_rows, k, v, table, feat_size, start, stop,
                                      explicit_softmax, use_reentrant=False))
        else:
            outs.append(_attend_rows(q_rows, k, v, table, feat_size, start, stop,
                                     explicit_softmax, blocks, bias_buffer))
    return torch.cat(outs, dim=2)


ATTENTION_IMPLS = ('auto', 'flex')
ATTENTION_KERNELS = ('flex', 'chunked', 'whole-bias', 'traced')
_compiled_flex_attention = None
FLEX_BLOCK_TOKENS = 128  # FlexAttention's default block size


def flex_token_bucket(tokens: int) -> int:
    """The token count FlexAttention runs at: the next power of two, at least one block."""
    return max(FLEX_BLOCK_TOKENS, 1 << (tokens - 1).bit_length())


def flex_relative_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            table: torch.Tensor, feat_size: Size) -> torch.Tensor:
    """Attention whose bias is read from the (heads, 2H-1, 2W-1) table inside the kernel
    (FlexAttention's ``score_mod``, compiled): no N x N bias exists, and where FlexAttention has a
    backward (GPUs, not CPUs) gradients reach the table through it.

    The kernel compiles once per token bucket (:func:`flex_token_bucket`), not per feature size:
    tokens are padded to the bucket, padded keys masked out (-inf) and padded queries dropped, and
    the sizes reach the score_mod only as tensors of bucket shapes, since a Python int there would
    be a constant of the compiled kernel (dynamic=True fails to build on CPUs:
    docs/torch-compile.md)."""
    global _compiled_flex_attention
    from torch.nn.attention.flex_attention import flex_attention
    if _compiled_flex_attention is None:
        _compiled_flex_attention = torch.compile(flex_attention, dynamic=False)
    tokens = int(q.shape[-2])
    padded = flex_token_bucket(tokens)
    q, k, v = (F.pad(t, (0, 0, 0, padded - tokens)) for t in (q, k, v))
    query_index, key_index = padded_flat_offset_indices(feat_size, padded, q.device)
    flat_table = F.pad(table.flatten(1), (0, 4 * padded - table[0].numel()))  # (2H-1)(2W-1) < 4HW
    valid_keys = torch.tensor(tokens, device=q.device)

    def add_relative_bias(score, batch, head, query, key):
        bias = flat_table[head, query_index[query] - key_index[key]]
        return torch.where(key < valid_keys, score + bias, float('-inf'))

    return _compiled_flex_attention(q, k, v, score_mod=add_relative_bias)[:, :, :tokens]


class RelativeAttention(nn.Module):
    """Global attention over a channels-last (B, H, W, C) map, the bias added to the logits
    before the softmax.

    q, k and v come from one linear layer whose output is laid out head-major (head 0's q, k, v,
    then head 1's, ...). The kernel is PyTorch's scaled_dot_product_attention with the bias as an
    additive mask, so fused kernels are used where the platform has them. When one layer's (heads,
    N, N) float32 bias would exceed ``max_bias_bytes``, queries are processed in chunks of map rows
    (recomputed in backward when training): same result, bounded memory. ``impl='flex'`` runs global
    attention through :func:`flex_relative_attention` instead (on CPU only without autograd, since
    FlexAttention has no CPU backward).

    Each call first chooses its kernel (:meth:`choose_kernel`: one of ``ATTENTION_KERNELS``), then
    runs it (:meth:`attend_flex`, :meth:`attend_chunked`, :meth:`attend_whole_bias`).
    """

    def __init__(self, in_channels: int, out_channels: int, attn_channels: int, head_dim: int,
                 rel_pos: CachedBiasProvider, qkv_bias: bool = True,
                 max_bias_bytes: int = 64 << 20, impl: str = 'auto'):
        super().__init__()
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f'attention impl {impl!r} is not one of {ATTENTION_IMPLS}')
        if impl == 'flex':
            require_torch(FLEX_ATTENTION, "attention_impl='flex' (FlexAttention)")
        self.impl = impl
        self.max_bias_bytes = max_bias_bytes
        if attn_channels % head_dim:
            raise ValueError(f'attention width {attn_channels} is not a multiple of head_dim '
                             f'{head_dim}')
        self.num_heads = attn_channels // head_dim
        self.head_dim = head_dim
        self.qkv = nn.Linear(in_channels, 3 * attn_channels, bias=qkv_bias)
        self.rel_pos = rel_pos
        self.proj = nn.Linear(attn_channels, out_channels, bias=qkv_bias)
        # the device type kernels are chosen for (None: the input's); tests set 'cuda' to run the
        # GPU branches on the CPU
        self.kernel_device_type: Optional[str] = None

    def kernel_device(self, x: torch.Tensor) -> torch.device:
        """The device the kernel choices are made for: ``kernel_device_type`` if set, else x's."""
        if self.kernel_device_type is None:
            return x.device
        return torch.device(self.kernel_device_type)

    def rows_per_chunk(self, batch: int, feat_size: Size) -> int:
        """Map rows of queries whose bias and scores (batch x heads x rows*W x N) fit the budget.
        The default budget keeps chunk-sized tensors large enough for glibc to return at free."""
        height, width = feat_size
        row_bytes = max(batch, 1) * self.num_heads * width * height * width * 4
        return max(1, self.max_bias_bytes // row_bytes)

    def choose_kernel(self, batch: int, feat_size: Size, device: torch.device,
                      masked: bool) -> str:
        """Which kernel runs this input: 'flex', 'chunked', 'whole-bias' (see the class doc), or
        'traced' while exporting (:func:`exporting`), whatever the size.
        ``masked``: a key padding mask comes with it, which only the whole bias takes."""
        if exporting():
            return 'traced'
        if masked:
            return 'whole-bias'
        # FlexAttention has no CPU backward: CPU training falls back to the other kernels
        if self.impl == 'flex' and (device.type != 'cpu' or not torch.is_grad_enabled()):
            return 'flex'
        if self.rows_per_chunk(batch, feat_size) < feat_size[0]:
            return 'chunked'
        return 'whole-bias'

    # Outside a compiled model's graph (a graph break): the bucket is a Python int taken from the
    # size, which would make the model's graph recompile per size; FlexAttention compiles per
    # bucket.
    @torch.compiler.disable
    def attend_flex(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    feat_size: Size) -> torch.Tensor:
        """The bias read from the table inside a compiled FlexAttention kernel."""
        return flex_relative_attention(q, k, v, self.rel_pos.table_at(feat_size), feat_size)

    # Eager even inside a compiled model (a graph break): dynamo would unroll the loop over chunks
    # and recompile for every chunk count.
    @torch.compiler.disable
    def attend_chunked(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       feat_size: Size) -> torch.Tensor:
        """Queries in chunks of map rows within the bias budget, recomputed in backward in
        training."""
        recompute = self.training and torch.is_grad_enabled()
        return chunked_relative_attention(q, k, v, self.rel_pos.table_at(feat_size), feat_size,
                                          self.rows_per_chunk(q.shape[0], feat_size), recompute,
                                          explicit_softmax_by_default(self.kernel_device(q)))

    def attend_whole_bias(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          feat_size: Size,
                          key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """SDPA with the whole (heads, N, N) bias, padded keys set to -inf, as its additive mask."""
        mask = self.rel_pos(feat_size).to(q.dtype).unsqueeze(0)
        if key_padding_mask is not None:
            hidden = torch.zeros(key_padding_mask.shape, dtype=q.dtype, device=q.device)
            hidden.masked_fill_(key_padding_mask, float('-inf'))
            mask = mask + hidden[:, None, None, :]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def attend_traced(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, feat_size: Size,
                      key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """For export: the table resized and the bias gathered from the sizes as graph values, in
        query chunks (:func:`traced_chunked_attention`); a window's small map, with its padding
        mask, at once. An explicit softmax in float32: plain ONNX ops from opset 11 on."""
        table = self.rel_pos.table_in_graph(feat_size)
        if key_padding_mask is None:
            kernel = traced_chunked_attention if torch.jit.is_tracing() \
                else exported_chunked_attention
            return kernel(q, k, v, table, feat_size)
        bias = gather_relative_bias_by_offsets(table, feat_size)
        scores = torch.matmul(q * self.head_dim ** -0.5, k.transpose(-2, -1)) + bias.to(q.dtype)
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float('-inf'))
        return torch.matmul(scores.softmax(dim=-1, dtype=torch.float32).to(v.dtype), v)

    def forward(self, x: torch.Tensor,
                key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``key_padding_mask``: optional (B, H*W) bool, True where a token is padding that no
        query may attend to (the edges of windows)."""
        batch, height, width, _ = x.shape
        feat_size = (height, width)
        qkv = self.qkv(x).view(batch, height * width, self.num_heads, 3, self.head_dim)
        q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        kernel = self.choose_kernel(batch, feat_size, self.kernel_device(x),
                                    key_padding_mask is not None)
        if kernel == 'traced':
            out = self.attend_traced(q, k, v, feat_size, key_padding_mask)
        elif kernel == 'flex':
            out = self.attend_flex(q, k, v, feat_size)
        elif kernel == 'chunked':
            out = self.attend_chunked(q, k, v, feat_size)
        else:
            out = self.attend_whole_bias(q, k, v, feat_size, key_padding_mask)
        channels = self.num_heads * self.head_dim  # not -1: an empty batch leaves it undetermined
        return self.proj(out.transpose(1, 2).reshape(batch, height, width, channels))
