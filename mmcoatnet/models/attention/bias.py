"""The providers of CoAtNet's relative position bias: a learned table (resized for other sizes) and
timm's relative-position MLP. Each gives, for a feature size, the (heads, 2H-1, 2W-1) table
(:meth:`~CachedBiasProvider.table_at`) or the whole (heads, HW, HW) bias gathered from it
(:meth:`~CachedBiasProvider.bias_at`)."""
from collections import OrderedDict

import torch
import torch.nn as nn
from mmengine.model.weight_init import trunc_normal_

from ..archs import TransformerOptions
from ..rel_pos import (
    Size,
    gather_relative_bias,
    interpolate_bias_table,
    log_relative_coords,
    resize_bias_table,
    table_size,
)


class CachedBiasProvider(nn.Module):
    """The table and the whole bias for a feature size; subclasses make the table
    (:meth:`make_table`).

    With ``cache`` (the attention asks for it in eval mode without autograd, outside torch.compile)
    recent sizes are cached: the table always, the whole bias only while it is at most
    ``max_cached_bias_bytes``, so detection resolutions do not keep a whole bias per layer. The key
    holds the parameters' version counters, so an optimizer step or a loaded checkpoint never
    serves a stale bias. Without it nothing is kept or read (gradients must reach the parameters),
    and training mode empties the cache.
    """

    def __init__(self, num_heads: int, cache_size: int = 8, max_cached_bias_bytes: int = 32 << 20):
        super().__init__()
        self.num_heads = num_heads
        self.cache_size = cache_size
        self.max_cached_bias_bytes = max_cached_bias_bytes
        self._cache: 'OrderedDict[tuple, dict]' = OrderedDict()

    def make_table(self, feat_size: Size, traceable: bool = False) -> torch.Tensor:
        """The (heads, 2H-1, 2W-1) table, made anew; ``traceable``: no size test (sizes may be
        graph values)."""
        raise NotImplementedError

    def train(self, mode: bool = True):
        if mode:  # training changes the parameters: what eval cached would only hold memory
            self._cache.clear()
        return super().train(mode)

    def _cache_entry(self, feat_size: Size) -> dict:
        first = next(self.parameters())
        key = (feat_size, first.device, first.dtype, tuple(p._version for p in self.parameters()))
        entry = self._cache.get(key)
        if entry is None:
            entry = self._cache[key] = dict(table=self.make_table(feat_size).detach())
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return entry

    def table_at(self, feat_size: Size, traceable: bool = False,
                 cache: bool = False) -> torch.Tensor:
        """The (heads, 2H-1, 2W-1) table for ``feat_size``; ``traceable`` for export (no size test,
        no cache)."""
        if traceable or not cache:  # the cache left as it is: under torch.compile it is only read
            return self.make_table(feat_size, traceable)
        return self._cache_entry(tuple(feat_size))['table']

    def bias_at(self, feat_size: Size, cache: bool = False) -> torch.Tensor:
        """The whole (heads, HW, HW) bias for ``feat_size``."""
        if not cache:
            return gather_relative_bias(self.make_table(feat_size), feat_size)
        entry = self._cache_entry(tuple(feat_size))
        if 'bias' in entry:
            return entry['bias']
        bias = gather_relative_bias(entry['table'], feat_size)
        if bias.numel() * bias.element_size() <= self.max_cached_bias_bytes:
            entry['bias'] = bias
        return bias

    @property
    def requires_grad(self) -> bool:
        return any(p.requires_grad for p in self.parameters())


class RelativePositionBias(CachedBiasProvider):
    """One learned scalar per head and 2-D offset (the paper's w[i - j]).

    The table is learned for ``pretrain_feat_size``; other sizes get it resized (bicubic).
    """

    def __init__(self, num_heads: int, pretrain_feat_size: Size, **cache_args):
        super().__init__(num_heads, **cache_args)
        self.pretrain_feat_size = tuple(pretrain_feat_size)
        self.table = nn.Parameter(torch.zeros(num_heads, *table_size(self.pretrain_feat_size)))
        trunc_normal_(self.table, std=0.02)

    def make_table(self, feat_size: Size, traceable: bool = False) -> torch.Tensor:
        if traceable:
            return interpolate_bias_table(self.table, feat_size)
        return resize_bias_table(self.table, feat_size)

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

    def make_table(self, feat_size: Size, traceable: bool = False) -> torch.Tensor:
        fc1 = self.mlp.fc1.weight
        coords = log_relative_coords(feat_size, device=fc1.device, dtype=fc1.dtype)
        return self.mlp(coords).permute(2, 0, 1)  # (heads, 2H-1, 2W-1)


def build_bias_provider(options: TransformerOptions, num_heads: int,
                        pretrain_feat_size: Size) -> CachedBiasProvider:
    if options.rel_pos == 'table':
        return RelativePositionBias(num_heads, pretrain_feat_size)
    return RelativePositionMlp(num_heads, options.rel_pos_mlp_dim)
