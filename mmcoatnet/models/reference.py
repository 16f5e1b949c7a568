"""The straightforward relative attention, to check the fast kernels against and to benchmark them
by:
an N x N int64 index gathers the whole bias, then an explicit softmax(q k^T / sqrt(d) + b) v.

It shares no step with the kernels of ``models/kernels`` (no Toeplitz blocks, no reversed keys,
no chunks, no SDPA), so a mistake in those shows as a difference from it. Slow and memory-hungry on
purpose.
"""
from typing import Dict, Optional

import torch
import torch.nn as nn

from .rel_pos import Size, relative_position_index


def index_gathered_bias(table: torch.Tensor, feat_size: Size,
                        index: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(heads, HW, HW) bias read from a (heads, 2H-1, 2W-1) table through the (HW, HW) offset index
    (``index``: a stored :func:`relative_position_index` of ``feat_size``, else made here)."""
    if index is None:
        index = relative_position_index(feat_size).to(table.device)
    return table.flatten(1)[:, index]


def reference_relative_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 bias: torch.Tensor,
                                 key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v for (B, heads, N, d) q, k, v and a (heads, N, N) bias;
    ``key_padding_mask``: optional (B, N) bool, True at keys no query may attend to."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1) + bias
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float('-inf'))
    return scores.softmax(dim=-1) @ v


class ReferenceRelativeAttention(nn.Module):
    """A :class:`~mmcoatnet.models.attention.RelativeAttention`'s layers (qkv, bias provider, proj)
    run the straightforward way. It keeps one (N, N) int64 index per feature size, as timm keeps one
    per block, and reads the table anew at every call, so gradients reach it."""

    def __init__(self, attn: nn.Module):
        super().__init__()
        self.attn = attn
        self.index: Dict[Size, torch.Tensor] = {}

    def forward(self, x: torch.Tensor,
                key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        attn = self.attn
        batch, height, width, _ = x.shape
        feat_size = (height, width)
        if feat_size not in self.index:
            self.index[feat_size] = relative_position_index(feat_size).to(x.device)
        bias = index_gathered_bias(attn.rel_pos.make_table(feat_size), feat_size,
                                   self.index[feat_size])
        qkv = attn.qkv(x).view(batch, height * width, attn.num_heads, 3, attn.head_dim)
        q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)  # head-major layout, as RelativeAttention's
        out = reference_relative_attention(q, k, v, bias, key_padding_mask)
        channels = attn.num_heads * attn.head_dim  # not -1: an empty batch leaves it undetermined
        return attn.proj(out.transpose(1, 2).reshape(batch, height, width, channels))
