"""The chunked kernel: exact attention over chunks of query map rows, so memory holds one chunk's
bias and scores instead of the N x N ones (docs/architecture.md#chunked-toeplitz-blocks). Keys and
values are taken in reversed row order, which makes each chunk's bias a strided view of the
table's Toeplitz blocks; with autograd, one Function with its own backward."""
import math
from typing import Optional

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp

from ..rel_pos import Size


def toeplitz_blocks(table: torch.Tensor, width: int) -> torch.Tensor:
    """(heads, W, 2H-1, W) blocks[h, x_q, dy, x_k] = table[h, dy, x_q - x_k + W - 1]: for every
    vertical offset, the W x W bias between two map rows. Small: (2H-1) W^2 per head. (unfold: W
    becomes a constant under torch.compile, and this kernel always runs eagerly.)"""
    return table.unfold(-1, width, 1).flip(-1).permute(0, 2, 1, 3).contiguous()


def reverse_key_rows(x: torch.Tensor, feat_size: Size) -> torch.Tensor:
    """(..., H*W, C) tokens with the map rows in reverse order, to pair with
    :func:`relative_bias_rows_keys_reversed`."""
    h, w = feat_size
    return x.unflatten(-2, (h, w)).flip(-3).flatten(-3, -2)


def relative_bias_rows_keys_reversed(blocks: torch.Tensor, height: int, row_start: int,
                                     row_stop: int) -> torch.Tensor:
    """The bias of the queries in map rows [row_start, row_stop) with the *key* map rows in reverse
    order, as a (heads, query rows, W, H, W) view of :func:`toeplitz_blocks`:
    (h, y_q, x_q, r, x_k) is the bias between query (row_start + y_q, x_q) and key (H - 1 - r,
    x_k).

    With key rows reversed the vertical offset index y_q + r grows along both axes, so the bias is a
    strided view: no gather, just one copy where a contiguous tensor is needed. Attention is
    unchanged when keys and values are reversed alike.
    """
    if blocks.shape[2] < row_stop - 1 + height:
        raise ValueError(f'blocks of shape {tuple(blocks.shape)} lack the vertical offsets of '
                         f'rows [{row_start}, {row_stop}) of a {height}-row map')
    rows = blocks[:, :, row_start:row_stop - 1 + height]
    # unfold: (hd, x_q, y_q, x_k, r) = rows[hd, x_q, y_q + r, x_k], offset y_q - (H-1-r) + H-1
    return rows.unfold(2, height, 1).permute(0, 2, 1, 4, 3)


def toeplitz_blocks_grad(grad: torch.Tensor) -> torch.Tensor:
    """The gradient of the table from the gradient of its Toeplitz blocks, given as
    (heads, 2H-1, W query columns, W key columns): entry (h, dy, dx) sums the entries with
    x_q - x_k + W - 1 = dx, the diagonals of each W x W matrix. :func:`toeplitz_blocks`'s adjoint
    (tested against its autograd), written out because autograd's is slow on a CPU."""
    heads, offsets, width, _ = grad.shape
    plates = heads * offsets
    # each row of the key-flipped matrix, shifted right by its query column: the diagonals become
    # columns, summed over the rows
    skewed = grad.new_zeros(plates, width, 2 * width)
    skewed.as_strided((plates, width, width), (2 * width * width, 2 * width + 1, 1)).copy_(
        grad.reshape(plates, width, width).flip(-1))
    return skewed.sum(1)[:, :2 * width - 1].view(heads, offsets, 2 * width - 1)


def add_rows_bias_grad(grad_blocks: torch.Tensor, grad_bias: torch.Tensor, row_start: int) -> None:
    """Adds to ``grad_blocks`` (heads, 2H-1, W, W) the gradient of the view
    :func:`relative_bias_rows_keys_reversed` gave for rows [row_start, ...), from the gradient of
    that (heads, rows, W, H, W) view: bias (y_q, x_q, r, x_k) is blocks[x_q, row_start + y_q + r,
    x_k], so each query row adds its (H, W, W) slab at its own vertical offset."""
    height = grad_bias.shape[3]
    for row in range(grad_bias.shape[1]):
        grad_blocks[:, row_start + row:row_start + row + height].add_(
            grad_bias[:, row].permute(0, 2, 1, 3))


def _chunk_buffer(q: torch.Tensor, queries: int, keys: int) -> Optional[torch.Tensor]:
    """One chunk's (B, heads, queries, keys) float32 scores, flat, reused by every chunk of a
    layer; None (each chunk allocates) off the CPU or for half-precision inputs."""
    if q.device.type != 'cpu' or q.dtype != torch.float32:
        return None
    return q.new_empty(q.shape[0] * q.shape[1] * queries * keys)


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
    """Exact softmax(q kᵀ / √d + bias) v over chunks of query map rows, with its own backward:
    nothing N x N is kept between forward and backward (as with recomputation), but the backward
    recomputes only the probabilities, never the output; its softmax gradient takes
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


def rows_per_chunk(batch: int, num_heads: int, feat_size: Size, max_bias_bytes: int) -> int:
    """Map rows of queries whose bias and scores (batch x heads x rows*W x N float32) fit
    ``max_bias_bytes``; at least one."""
    height, width = feat_size
    row_bytes = max(batch, 1) * num_heads * width * height * width * 4
    return max(1, max_bias_bytes // row_bytes)


# Both kernels run eagerly even inside a compiled model (a graph break): dynamo would unroll the
# loop over chunks and recompile for every chunk count.
@torch.compiler.disable
def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, table: torch.Tensor,
                      feat_size: Size, max_bias_bytes: int) -> torch.Tensor:
    """The ``chunked`` kernel: softmax(q kᵀ / √d + bias) v for (B, heads, N, d) q, k, v in chunks
    of query map rows within ``max_bias_bytes`` (:func:`rows_per_chunk`), through
    :class:`ChunkedAttentionFunction`; ``table`` is the (heads, 2H-1, 2W-1) table of
    ``feat_size``."""
    height, width = feat_size
    k, v = reverse_key_rows(k, feat_size), reverse_key_rows(v, feat_size)
    return ChunkedAttentionFunction.apply(
        q, k, v, table, height, width, rows_per_chunk(q.shape[0], q.shape[1], feat_size,
                                                      max_bias_bytes))


def _sdpa_rows(q_rows: torch.Tensor, k_reversed: torch.Tensor, v_reversed: torch.Tensor,
               bias_rows: torch.Tensor, bias_buffer: Optional[torch.Tensor] = None
               ) -> torch.Tensor:
    """One chunk through SDPA, its (heads, rows, W, H, W) bias view as the additive mask; copied
    into ``bias_buffer`` where every chunk reuses one (no fresh pages to fault in each time)."""
    if bias_buffer is not None:
        bias_rows = bias_buffer[:bias_rows.numel()].view(bias_rows.shape).copy_(bias_rows)
    bias = bias_rows.reshape(bias_rows.shape[0], -1, k_reversed.shape[-2]).to(q_rows.dtype)
    return F.scaled_dot_product_attention(q_rows, k_reversed, v_reversed,
                                          attn_mask=bias.unsqueeze(0))


def _recomputed_sdpa_rows(q_rows: torch.Tensor, k_reversed: torch.Tensor,
                          v_reversed: torch.Tensor, table: torch.Tensor, feat_size: Size,
                          row_start: int, row_stop: int) -> torch.Tensor:
    """One chunk through SDPA with autograd, its bias made from only the table rows it reaches:
    what checkpointing keeps for the chunk is the table, and its backward recomputes the rest."""
    height, width = feat_size
    blocks = toeplitz_blocks(table[:, row_start:row_stop - 1 + height], width)
    return _sdpa_rows(q_rows, k_reversed, v_reversed,
                      relative_bias_rows_keys_reversed(blocks, height, 0, row_stop - row_start))


@torch.compiler.disable
def chunked_sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           table: torch.Tensor, feat_size: Size, max_bias_bytes: int,
                           grad: bool) -> torch.Tensor:
    """The ``chunked-sdpa`` kernel: :func:`chunked_attention`'s chunks, each through SDPA (fused
    kernels where the platform has them). With ``grad`` (autograd records) each chunk is
    recomputed in backward (non-reentrant checkpointing); without, the Toeplitz blocks and one bias
    buffer serve every chunk."""
    height, width = feat_size
    chunk_rows = rows_per_chunk(q.shape[0], q.shape[1], feat_size, max_bias_bytes)
    k, v = reverse_key_rows(k, feat_size), reverse_key_rows(v, feat_size)
    blocks = bias_buffer = None
    if not grad:
        blocks = toeplitz_blocks(table, width)
        bias_buffer = table.new_empty(table.shape[0] * min(chunk_rows, height) * width * height
                                      * width)
    outs = []
    for start in range(0, height, chunk_rows):
        stop = min(start + chunk_rows, height)
        q_rows = q[:, :, start * width:stop * width]
        if grad:
            outs.append(cp.checkpoint(_recomputed_sdpa_rows, q_rows, k, v, table, feat_size,
                                      start, stop, use_reentrant=False))
        else:
            outs.append(_sdpa_rows(q_rows, k, v, relative_bias_rows_keys_reversed(
                blocks, height, start, stop), bias_buffer))
    return torch.cat(outs, dim=2)
