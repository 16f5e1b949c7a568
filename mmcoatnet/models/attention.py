"""Global multi-head self-attention with CoAtNet's relative position bias."""
from collections import OrderedDict
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model.weight_init import trunc_normal_

from .rel_pos import Size, relative_bias, table_size


class RelativePositionBias(nn.Module):
    """One learned scalar per head and 2-D offset, for feature maps of any size.

    The table is learned for ``pretrain_feat_size``; other sizes get it resized (bicubic). In eval
    mode without autograd, the bias of recent sizes is cached; the cache key holds the table's
    version counter, so an optimizer step or a loaded checkpoint never serves a stale bias.
    """

    def __init__(self, num_heads: int, pretrain_feat_size: Size, cache_size: int = 8):
        super().__init__()
        self.num_heads = num_heads
        self.pretrain_feat_size = tuple(pretrain_feat_size)
        self.table = nn.Parameter(torch.zeros(num_heads, *table_size(self.pretrain_feat_size)))
        self.cache_size = cache_size
        self._cache: 'OrderedDict[tuple, torch.Tensor]' = OrderedDict()
        trunc_normal_(self.table, std=0.02)

    def _cacheable(self) -> bool:
        return not self.training and not (torch.is_grad_enabled() and self.table.requires_grad)

    def forward(self, feat_size: Size) -> torch.Tensor:
        """(heads, HW, HW) bias, in the table's dtype."""
        feat_size = (int(feat_size[0]), int(feat_size[1]))
        if not self._cacheable():
            self._cache.clear()  # nothing derived from the table outlives a training step
            return relative_bias(self.table, feat_size)
        key = (feat_size, self.table.device, self.table.dtype, self.table._version)
        bias = self._cache.get(key)
        if bias is None:
            bias = relative_bias(self.table, feat_size).detach()
            self._cache[key] = bias
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return bias

    def extra_repr(self) -> str:
        return f'num_heads={self.num_heads}, pretrain_feat_size={self.pretrain_feat_size}'


class RelativeAttention(nn.Module):
    """Global attention over a channels-last (B, H, W, C) map, bias added to the logits before softmax.

    q, k and v come from one linear layer whose output is laid out head-major
    (head 0's q, k, v, then head 1's, ...). The kernel is PyTorch's scaled_dot_product_attention with
    the bias as an additive mask, so fused kernels are used where the platform has them.
    """

    def __init__(self, in_channels: int, out_channels: int, attn_channels: int, head_dim: int,
                 pretrain_feat_size: Size, qkv_bias: bool = True):
        super().__init__()
        if attn_channels % head_dim:
            raise ValueError(f'attention width {attn_channels} is not a multiple of head_dim {head_dim}')
        self.num_heads = attn_channels // head_dim
        self.head_dim = head_dim
        self.qkv = nn.Linear(in_channels, 3 * attn_channels, bias=qkv_bias)
        self.rel_pos = RelativePositionBias(self.num_heads, pretrain_feat_size)
        self.proj = nn.Linear(attn_channels, out_channels, bias=qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = x.shape
        tokens = height * width
        qkv = self.qkv(x).view(batch, tokens, self.num_heads, 3, self.head_dim)
        q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        bias = self.rel_pos((height, width)).to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0))
        out = out.transpose(1, 2).reshape(batch, height, width, -1)
        return self.proj(out)
