"""Pure functions for windowed attention: cutting a channels-last map into non-overlapping windows
(padding the edges) and putting it back, and the key mask that hides the padding."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.utils import to_2tuple

from .rel_pos import Size


def window_grid(feat_size: Size, window_size: Size) -> Size:
    """How many windows cover an H x W map along each side (the last ones partly padding)."""
    return tuple((s + w - 1) // w for s, w in zip(feat_size, window_size))


def window_partition(x: torch.Tensor, window_size: Size) -> torch.Tensor:
    """(B, H, W, C) -> (B * windows, wh, ww, C), zero-padding the bottom and right edges."""
    batch, height, width, channels = x.shape
    wh, ww = window_size
    rows, cols = window_grid((height, width), window_size)
    x = F.pad(x, (0, 0, 0, cols * ww - width, 0, rows * wh - height))
    x = x.view(batch, rows, wh, cols, ww, channels).transpose(2, 3)
    return x.reshape(batch * rows * cols, wh, ww, channels)


def window_unpartition(windows: torch.Tensor, feat_size: Size) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * windows, wh, ww, C) -> (B, H, W, C), the padding
    cut."""
    height, width = feat_size
    _, wh, ww, channels = windows.shape
    rows, cols = window_grid(feat_size, (wh, ww))
    x = windows.view(-1, rows, cols, wh, ww, channels).transpose(2, 3)
    x = x.reshape(-1, rows * wh, cols * ww, channels)
    return x[:, :height, :width].contiguous()


def window_padding_mask(batch: int, feat_size: Size, window_size: Size, device=None,
                        always: bool = False) -> Optional[torch.Tensor]:
    """(B * windows, wh * ww) bool, True at padded tokens; None when the windows tile the map,
    unless ``always`` (traced graphs: whether they tile is known only at run time)."""
    rows, cols = window_grid(feat_size, window_size)
    wh, ww = window_size
    if not always and rows * wh == feat_size[0] and cols * ww == feat_size[1]:
        return None
    # float, not bool: ONNX's Pad before opset 13 takes no bool tensors
    valid = torch.ones(1, feat_size[0], feat_size[1], 1, device=device)
    padded = window_partition(valid, window_size).flatten(1) == 0  # (windows, wh * ww)
    return padded.repeat(batch, 1)


def as_window_size(value, default: Size) -> Tuple[int, int]:
    """A window size from an int, a pair, or None (the default: the pre-training feature size)."""
    return tuple(default) if value is None else tuple(to_2tuple(value))
