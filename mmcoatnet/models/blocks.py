"""CoAtNet's building blocks: the S0 stem, MBConv with squeeze-excitation, the relative-attention
transformer block, and the stage that chains them. Options come from the architecture table."""
import contextlib
import functools
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath
from torch.nn.modules.batchnorm import _BatchNorm

from ..torch_compat import is_compiling
from .archs import ConvOptions, TransformerOptions
from .attention import build_attention, build_bias_provider
from .norm_act import norm_act
from .rel_pos import Size


def build_pool(kind: str) -> nn.Module:
    """A stride-2 pool whose output is ceil(H/2) x ceil(W/2), so odd sizes keep their last row."""
    if kind == 'avg2':
        return nn.AvgPool2d(2, stride=2, ceil_mode=True, count_include_pad=False)
    if kind == 'max':
        return nn.MaxPool2d(3, stride=2, padding=1)
    raise ValueError(f'unknown pool {kind!r}; known: "avg2", "max"')


def build_act(act: Optional[str]) -> nn.Module:
    return build_activation_layer(dict(type=act)) if act else nn.Identity()


def build_norm(norm_cfg: dict, channels: int) -> nn.Module:
    """An mmcv norm (``norm_cfg``: e.g. ``dict(type='BN')``) over the channels of NCHW maps."""
    return build_norm_layer(norm_cfg, channels)[1]


class ChannelsLastBatchNorm(nn.Module):
    """BatchNorm over the last dim of (B, H, W, C) maps. The BN is a child module, so SyncBN
    conversion swaps it and keeps the layout change around it."""

    def __init__(self, bn: nn.Module):
        super().__init__()
        self.bn = bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def build_channels_last_norm(norm_cfg: dict, channels: int) -> nn.Module:
    """An mmcv norm over the last dim of (B, H, W, C) maps: ``LN`` as it is, ``BN`` (and SyncBN)
    around a permute to NCHW."""
    norm = build_norm(norm_cfg, channels)
    return ChannelsLastBatchNorm(norm) if isinstance(norm, _BatchNorm) else norm


class Stem(nn.Module):
    """S0: 3x3 conv with stride 2, norm and activation, 3x3 conv (the next block pre-normalises)."""

    def __init__(self, in_channels: int, channels: Sequence[int], norm_cfg: dict, act: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels[0], 3, stride=2, padding=1, bias=False)
        self.norm1 = build_norm(norm_cfg, channels[0])
        self.act1 = build_act(act)
        self.conv2 = nn.Conv2d(channels[0], channels[1], 3, stride=1, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(norm_act(self.norm1, self.act1, self.conv1(x)))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced_channels: int, act: str):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced_channels, 1)
        self.act = build_activation_layer(dict(type=act))
        self.fc2 = nn.Conv2d(reduced_channels, channels, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, C, 1, 1) per-channel scale in (0, 1)."""
        return self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))).sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class PooledProjection(nn.Module):
    """Downsampling shortcut: stride-2 pool, then a 1x1 projection when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, pool: str, bias: bool):
        super().__init__()
        self.pool = build_pool(pool)
        self.expand = (nn.Conv2d(in_channels, out_channels, 1, bias=bias)
                       if in_channels != out_channels else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.pool(x))


class MBConv(nn.Module):
    """Pre-norm inverted bottleneck (1x1 expand, depthwise 3x3, SE, 1x1 project) on NCHW maps."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, options: ConvOptions,
                 norm_cfg: dict, drop_path: float = 0.):
        super().__init__()
        act = options.act
        expand_base = out_channels if options.expand_from == 'out' else in_channels
        mid_channels = int(expand_base * options.expand_ratio)
        se_base = out_channels if options.expand_from == 'out' else mid_channels
        dw_stride = stride if options.stride_mode == 'dw' else 1

        if stride == 2:
            self.shortcut = PooledProjection(
                in_channels, out_channels, options.pool, options.output_bias)
        elif in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:
            raise ValueError(f'a stride-1 MBConv needs equal widths, got {in_channels} -> '
                             f'{out_channels}')
        self.pre_norm = build_norm(norm_cfg, in_channels)
        self.pre_act = build_act(act if options.pre_norm_act else None)
        pooled = stride == 2 and options.stride_mode == 'pool'
        self.down = build_pool(options.residual_pool) if pooled else nn.Identity()
        self.conv1_1x1 = nn.Conv2d(in_channels, mid_channels, 1, bias=False)
        self.norm1 = build_norm(norm_cfg, mid_channels)
        self.act1 = build_act(act)
        self.conv2_kxk = nn.Conv2d(mid_channels, mid_channels, 3, stride=dw_stride, padding=1,
                                   groups=mid_channels, bias=False)
        se = SqueezeExcite(mid_channels, int(se_base * options.se_ratio), options.se_act)
        self.se_early = se if options.se_before_norm else None
        self.norm2 = build_norm(norm_cfg, mid_channels)
        self.act2 = build_act(act)
        self.se = None if options.se_before_norm else se
        self.conv3_1x1 = nn.Conv2d(mid_channels, out_channels, 1, bias=options.output_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x)
        x = self.down(norm_act(self.pre_norm, self.pre_act, x))
        x = norm_act(self.norm1, self.act1, self.conv1_1x1(x))
        x = self.conv2_kxk(x)
        gate = self.se_early.gate(x) if self.se_early is not None else None
        x = norm_act(self.norm2, self.act2, x, scale=gate)
        if self.se is not None:
            x = self.se(x)
        return shortcut + self.drop_path(self.conv3_1x1(x))


def dense_when_compiling(x: torch.Tensor) -> torch.Tensor:
    """``x``, or a contiguous copy under torch.compile, where inductor fails (ValueRangeError) on
    the strides of permuted channels-last maps whose H and W are symbolic (dynamic shapes)."""
    return x.contiguous() if is_compiling() else x


def pool_channels_last(pool: nn.Module, x: torch.Tensor) -> torch.Tensor:
    pooled = pool(dense_when_compiling(x.permute(0, 3, 1, 2)))
    return dense_when_compiling(pooled.permute(0, 2, 3, 1))


class LayerScale(nn.Module):
    def __init__(self, channels: int, init_value: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class TransformerBlock(nn.Module):
    """Pre-norm transformer block with relative attention on channels-last (B, H, W, C) maps.

    With stride 2 the normalised input is pooled before attention and the shortcut is a pooled
    projection, as in the paper's downsampling transformer block. With ``window_size`` attention
    runs inside non-overlapping windows (:class:`~.attention.WindowedAttention`); None is global.
    ``max_bias_bytes``: the attention's bias budget, None for its device's
    (:class:`~.attention.RelativeAttention`).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 options: TransformerOptions, pretrain_feat_size: Size, drop_path: float = 0.,
                 window_size: Optional[Size] = None, attention_impl: str = 'auto',
                 max_bias_bytes: Optional[int] = None):
        super().__init__()
        attn_channels = out_channels if options.attn_width == 'out' else in_channels

        if stride == 2:
            self.shortcut_pool = build_pool(options.pool)
            self.shortcut_proj = (nn.Linear(in_channels, out_channels, bias=options.shortcut_bias)
                                  if in_channels != out_channels else nn.Identity())
            self.attn_pool = build_pool(options.pool)
        elif in_channels == out_channels:
            self.shortcut_pool = self.shortcut_proj = self.attn_pool = None
        else:
            raise ValueError(
                f'a stride-1 transformer block needs equal widths, got {in_channels} -> '
                f'{out_channels}')
        norm_cfg = dict(type=options.norm, eps=options.norm_eps)
        self.norm1 = build_channels_last_norm(norm_cfg, in_channels)
        rel_pos = build_bias_provider(options, attn_channels // options.head_dim,
                                      pretrain_feat_size)
        self.attn = build_attention(in_channels, out_channels, attn_channels, options.head_dim,
                                    rel_pos, window_size, impl=attention_impl,
                                    max_bias_bytes=max_bias_bytes)
        self.norm2 = build_channels_last_norm(norm_cfg, out_channels)
        hidden = int(out_channels * options.mlp_ratio)
        self.mlp = nn.Sequential()
        self.mlp.add_module('fc1', nn.Linear(out_channels, hidden))
        self.mlp.add_module('act', build_activation_layer(dict(type=options.act)))
        self.mlp.add_module('fc2', nn.Linear(hidden, out_channels))
        init_scale = options.layer_scale
        self.ls1 = LayerScale(out_channels, init_scale) if init_scale else nn.Identity()
        self.ls2 = LayerScale(out_channels, init_scale) if init_scale else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        if self.attn_pool is not None:
            x = self.shortcut_proj(pool_channels_last(self.shortcut_pool, x))
            y = pool_channels_last(self.attn_pool, y)
        x = x + self.drop_path(self.ls1(self.attn(y)))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


def _recompute_contexts(block: nn.Module):
    """checkpoint's (forward, recompute) contexts: the recompute keeps the running statistics."""
    return contextlib.nullcontext(), running_stats_kept(block)


@contextlib.contextmanager
def running_stats_kept(module: nn.Module):
    """Puts the BatchNorm running statistics of ``module`` back as they were on entry: around the
    recomputation of a checkpointed block, whose BatchNorms run in training mode a second time, so
    that a step updates them once, as without checkpointing."""
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for norm, (mean, var, count) in zip(norms, saved):
                norm.running_mean.copy_(mean)
                norm.running_var.copy_(var)
                norm.num_batches_tracked.copy_(count)


class CoAtNetStage(nn.Module):
    """A run of blocks whose first one halves the resolution. Takes and returns NCHW maps
    (channels-last in memory); transformer stages work on their (B, H, W, C) views. ``with_cp``
    recomputes each block in backward."""

    def __init__(self, blocks: List[nn.Module], channels_last: bool, with_cp: bool = False):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.channels_last = channels_last
        self.with_cp = with_cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = dense_when_compiling(x.permute(0, 2, 3, 1))
        for block in self.blocks:
            if self.with_cp and self.training and torch.is_grad_enabled():
                x = cp.checkpoint(block, x, use_reentrant=False, context_fn=functools.partial(
                    _recompute_contexts, block))
            else:
                x = block(x)
        if self.channels_last:
            # eager: NCHW in channels-last memory format, no copy
            x = dense_when_compiling(x.permute(0, 3, 1, 2))
        return x
