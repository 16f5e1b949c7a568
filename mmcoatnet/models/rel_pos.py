"""Pure functions for CoAtNet's relative position bias: offset indexing, table resizing, bias
gathering.

A table holds one learned scalar per head and 2-D offset (dy, dx) of an H x W map, laid out as
(heads, 2H - 1, 2W - 1) with offset (dy, dx) at row dy + H - 1, column dx + W - 1.
"""
from typing import Tuple

import torch
import torch.nn.functional as F

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




def log_relative_coords(feat_size: Size, device=None, dtype=None) -> torch.Tensor:
    """(2H-1, 2W-1, 2) offsets (dy, dx) mapped to sign(d) * log(1 + |d|), the input of timm's
    relative-position MLP; independent of any pre-training size."""
    h, w = feat_size
    dy = torch.arange(-(h - 1), h, device=device, dtype=torch.float32)
    dx = torch.arange(-(w - 1), w, device=device, dtype=torch.float32)
    coords = torch.stack(torch.meshgrid(dy, dx, indexing='ij'), dim=-1)
    return (torch.sign(coords) * torch.log1p(coords.abs())).to(dtype)


def gather_relative_bias(table: torch.Tensor, feat_size: Size) -> torch.Tensor:
    """(heads, HW, HW) bias with entry (h, i, j) = table[h, y_i - y_j + H - 1, x_i - x_j + W - 1],
    built without an N x N index: the Toeplitz blocks, then one gather of whole block rows
    (:func:`gather_rows_bias_by_offsets` for every row). Its backward is an index-add back into
    the table."""
    _check_table_fits(table, feat_size)
    return gather_relative_bias_by_offsets(table, feat_size)


def gather_relative_bias_by_offsets(table: torch.Tensor, feat_size: Size) -> torch.Tensor:
    """:func:`gather_relative_bias` with no size test, view or Python int: traceable with the
    sizes as graph values (the exported graph's padded windows)."""
    h, w = feat_size
    return gather_rows_bias_by_offsets(toeplitz_blocks_by_offsets(table, w), feat_size,
                                       torch.arange(h, device=table.device))
