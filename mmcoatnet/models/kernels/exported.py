"""The kernels of an exported graph (docs/architecture.md#traced): ``traced`` for torch.jit.trace
(TorchScript's ONNX exporter), ``exported`` for torch.export (torch.onnx's dynamo exporter). Sizes
are graph values there, so the bias is gathered with indices built from ``arange``, in a fixed
number of query chunks: one graph for every size, plain ONNX ops, the softmax in float32."""
from typing import Optional

import torch
import torch.nn.functional as F

from ..rel_pos import (
    Size,
    gather_relative_bias_by_offsets,
    gather_rows_bias_by_offsets,
    toeplitz_blocks_by_offsets,
)

# Query chunks of the exported graph: its attention holds 1/TRACED_CHUNKS of a layer's N x N
# scores and bias at a time (docs/deployment.md). A fixed count, each chunk ceil(H / TRACED_CHUNKS)
# map rows: the graph stays one graph for every size (trailing chunks of a small map are empty).
TRACED_CHUNKS = 16


def _attend_rows(scaled_q_rows: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 blocks: torch.Tensor, feat_size: Size, rows: torch.Tensor) -> torch.Tensor:
    """One chunk: the queries of map ``rows`` (already scaled) against every key, the bias
    gathered from the Toeplitz ``blocks``, the softmax in float32."""
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
        outs.append(_attend_rows(scaled.index_select(2, tokens), k, v, blocks, feat_size,
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
        outs.append(_attend_rows(scaled.narrow(2, start * width, rows_per_chunk * width),
                                 k, v, blocks, feat_size, rows))
    return torch.cat(outs, dim=2).narrow(2, 0, height * width)


def masked_graph_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, table: torch.Tensor,
                           feat_size: Size, key_padding_mask: torch.Tensor) -> torch.Tensor:
    """A padded window's small map in an exported graph, at once: the whole bias gathered with
    graph-valued sizes, padded keys at -inf, the softmax in float32."""
    bias = gather_relative_bias_by_offsets(table, feat_size)
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-2, -1)) + bias.to(q.dtype)
    scores = scores.masked_fill(key_padding_mask[:, None, None, :], float('-inf'))
    return torch.matmul(scores.softmax(dim=-1, dtype=torch.float32).to(v.dtype), v)


def graph_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, table: torch.Tensor,
                    feat_size: Size, tracer: str,
                    key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The ``traced`` (``tracer='jit'``) or ``exported`` (``'export'``) kernel; ``table`` resized
    with graph-valued sizes."""
    if key_padding_mask is not None:
        return masked_graph_attention(q, k, v, table, feat_size, key_padding_mask)
    kernel = traced_chunked_attention if tracer == 'jit' else exported_chunked_attention
    return kernel(q, k, v, table, feat_size)
