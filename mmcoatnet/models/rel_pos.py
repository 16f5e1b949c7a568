"""Pure functions for CoAtNet's relative position bias: offset indexing, table resizing, bias
gathering.

A table holds one learned scalar per head and 2-D offset (dy, dx) of an H x W map, laid out as
(heads, 2H - 1, 2W - 1) with offset (dy, dx) at row dy + H - 1, column dx + W - 1.
"""
from typing import Tuple

import torch
import torch.nn.functional as F

from ..torch_compat import is_compiling

Size = Tuple[int, int]


def table_size(feat_size: Size) -> Size:
    """Rows and columns of the bias table that covers every offset of a feature map."""
    h, w = feat_size
    return 2 * h - 1, 2 * w - 1


def relative_position_index(feat_size: Size) -> torch.Tensor:
    """(HW, HW) int64 index into the flattened (2H-1)(2W-1) table: entry (i, j) is offset i - j.

    The plain indexing of :mod:`.reference`; the backbone gathers without this N x N buffer.
    """
    h, w = feat_size
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
    coords = torch.stack([ys.flatten(), xs.flatten()])  # (2, HW)
    offsets = coords[:, :, None] - coords[:, None, :]  # (2, HW, HW): i - j
    return (offsets[0] + h - 1) * (2 * w - 1) + (offsets[1] + w - 1)


def resize_bias_table(table: torch.Tensor, feat_size: Size) -> torch.Tensor:
    """Bicubic resize of a (heads, 2Hp-1, 2Wp-1) table to the one for an H x W map.

    Returns ``table`` itself when the size already fits, so the pre-training size stays exact.
    Interpolates in float32 (bicubic in half precision loses the small bias values).
    """
    if tuple(table.shape[-2:]) == table_size(feat_size):
        return table
    return interpolate_bias_table(table, feat_size)


def interpolate_bias_table(table: torch.Tensor, feat_size: Size) -> torch.Tensor:
    """:func:`resize_bias_table` without its shape test: the target is arithmetic on ``feat_size``
    only, so with traced sizes (0-dim tensors) an exported graph resizes for its run-time size."""
    h, w = feat_size
    resized = F.interpolate(
        table.float().unsqueeze(0), size=(2 * h - 1, 2 * w - 1), mode='bicubic',
        align_corners=False)
    return resized.squeeze(0).to(table.dtype)


def _check_table_fits(table: torch.Tensor, feat_size: Size):
    h, w = feat_size
    if tuple(table.shape[-2:]) != table_size(feat_size):
        raise ValueError(
            f'bias table of shape {tuple(table.shape)} does not fit a {h}x{w} feature map, '
            f'which needs (heads, {2 * h - 1}, {2 * w - 1}); resize it with resize_bias_table '
            'first')


def toeplitz_blocks(table: torch.Tensor, width: int) -> torch.Tensor:
    """(heads, W, 2H-1, W) blocks[h, x_q, dy, x_k] = table[h, dy, x_q - x_k + W - 1]: for every
    vertical offset, the W x W bias between two map rows. Small: (2H-1) W^2 per head."""
    if is_compiling():  # unfold would make W a constant: one graph per width
        return table[:, :, offset_index(width).to(table.device)].permute(0, 2, 1, 3).contiguous()
    return table.unfold(-1, width, 1).flip(-1).permute(0, 2, 1, 3).contiguous()


def toeplitz_blocks_grad(grad: torch.Tensor) -> torch.Tensor:
    """The gradient of the table from the gradient of its Toeplitz blocks, given as
    (heads, 2H-1, W query columns, W key columns): entry (h, dy, dx) sums the entries with
    x_q - x_k + W - 1 = dx, the diagonals of each W x W matrix. :func:`toeplitz_blocks`'s adjoint
    (tested against its autograd), written out because unfold's own backward is slow on a CPU."""
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


def relative_bias_rows_keys_reversed(blocks: torch.Tensor, height: int, row_start: int,
                                     row_stop: int) -> torch.Tensor:
    """The bias of the queries in map rows [row_start, row_stop) with the *key* map rows in reverse
    order, as a (heads, query rows, W, H, W) view of :func:`toeplitz_blocks`: (h, y_q, x_q, r, x_k)
    is the bias between query (row_start + y_q, x_q) and key (H - 1 - r, x_k).

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


def reverse_key_rows(x: torch.Tensor, feat_size: Size) -> torch.Tensor:
    """(..., H*W, C) tokens with the map rows in reverse order, to pair with
    :func:`relative_bias_rows_keys_reversed`."""
    h, w = feat_size
    return x.unflatten(-2, (h, w)).flip(-3).flatten(-3, -2)


def gather_relative_bias(table: torch.Tensor, feat_size: Size) -> torch.Tensor:
    """(heads, HW, HW) bias with entry (h, i, j) = table[h, y_i - y_j + H - 1, x_i - x_j + W - 1].

    Built without an N x N index: the Toeplitz blocks (:func:`toeplitz_blocks`), then one gather
    that copies whole block rows, indexed by (query row - key row). Its backward is an index-add
    back into the table.
    """
    _check_table_fits(table, feat_size)
    h, w = feat_size
    heads = table.shape[0]
    blocks = toeplitz_blocks(table, w)
    device = table.device
    rows = torch.arange(h, device=device)
    dy = rows[:, None] - rows[None, :] + h - 1  # (query rows, key rows)
    head_index = torch.arange(heads, device=device)[:, None, None, None]
    column_index = torch.arange(w, device=device)[None, None, :, None]
    bias = blocks[head_index, column_index, dy[None, :, None, :]]  # (heads, y_q, x_q, y_k, x_k)
    return bias.reshape(heads, h * w, h * w)


def offset_index(length) -> torch.Tensor:
    """(L, L) int64 index i - j + L - 1 of the offset between positions i and j along one axis,
    from arange: ``length`` may be a traced 0-dim tensor, so exported graphs build it at run
    time."""
    positions = torch.arange(length)
    return positions[:, None] - positions[None, :] + (length - 1)


def toeplitz_blocks_by_offsets(table: torch.Tensor, width) -> torch.Tensor:
    """(heads, 2H-1, x_q, x_k) Toeplitz blocks gathered by :func:`offset_index` of the columns:
    traceable with ``width`` a graph value."""
    index = offset_index(width).to(table.device)
    # index_select, not table[:, :, index]: torch.export lowers the latter to a Transpose around
    # GatherND, which copies its output once more
    return table.index_select(2, index.flatten()).reshape(
        table.shape[0], table.shape[1], index.shape[0], index.shape[1])


def gather_rows_bias_by_offsets(blocks: torch.Tensor, feat_size: Size,
                                rows: torch.Tensor) -> torch.Tensor:
    """(heads, len(rows) * W, HW) bias of the queries in map ``rows`` against every key, gathered
    from :func:`toeplitz_blocks_by_offsets` by (vertical offset, query column) in its final layout:
    traceable, the sizes and rows graph values."""
    h, w = feat_size
    query_columns = torch.arange(w, device=blocks.device)
    key_rows = torch.arange(h, device=blocks.device)
    offsets = rows.to(blocks.device)[:, None] - key_rows[None, :] + (h - 1)  # (rows, key rows)
    index = offsets[:, None, :] * w + query_columns[None, :, None]  # (rows, x_q, key rows)
    # (heads, y_q * x_q * y_k, x_k), each gathered entry a row of x_k; index_select for the reason
    # given in toeplitz_blocks_by_offsets
    bias = blocks.flatten(1, 2).index_select(1, index.flatten())
    # sizes spelled out, no -1: onnxruntime cannot infer a -1 beside a zero (an empty chunk)
    return bias.reshape(bias.shape[0], rows.shape[0] * w, h * w)


def gather_relative_bias_by_offsets(table: torch.Tensor, feat_size: Size) -> torch.Tensor:
    """(heads, HW, HW) bias, as :func:`gather_relative_bias` gives it, with no size test, view or
    Python int: traceable with the sizes as graph values (the export path; the eager one takes
    ints)."""
    h, w = feat_size
    return gather_rows_bias_by_offsets(toeplitz_blocks_by_offsets(table, w), feat_size,
                                       torch.arange(h, device=table.device))


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


def log_relative_coords(feat_size: Size, device=None, dtype=None) -> torch.Tensor:
    """(2H-1, 2W-1, 2) offsets (dy, dx) mapped to sign(d) * log(1 + |d|), the input of timm's
    relative-position MLP; independent of any pre-training size."""
    h, w = feat_size
    dy = torch.arange(-(h - 1), h, device=device, dtype=torch.float32)
    dx = torch.arange(-(w - 1), w, device=device, dtype=torch.float32)
    coords = torch.stack(torch.meshgrid(dy, dx, indexing='ij'), dim=-1)
    return (torch.sign(coords) * torch.log1p(coords.abs())).to(dtype)
