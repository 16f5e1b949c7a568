"""Global multi-head self-attention with CoAtNet's relative position bias, and its windowed form.
Each call reads torch's state once, asks :func:`~..kernels.select_kernel` which kernel runs it,
and runs that kernel (docs/architecture.md#attention-kernels)."""
from typing import Optional

import torch
import torch.nn as nn
from torch.profiler import record_function

from ...torch_compat import FLEX_ATTENTION, require_torch
from ..kernels import (
    ATTENTION_IMPLS,
    Kernel,
    KernelContext,
    TorchState,
    checked_max_bias_bytes,
    chunked_attention,
    chunked_sdpa_attention,
    dense_attention,
    flex_relative_attention,
    graph_attention,
    read_torch_state,
    select_kernel,
)
from ..rel_pos import Size
from ..windows import window_padding_mask, window_partition, window_unpartition
from .bias import CachedBiasProvider


class RelativeAttention(nn.Module):
    """Global attention over a channels-last (B, H, W, C) map, the bias added to the logits
    before the softmax.

    q, k and v come from one linear layer whose output is laid out head-major (head 0's q, k, v,
    then head 1's, ...). ``max_bias_bytes`` bounds one layer's float32 bias and scores (None: the
    device's default): past it the queries run in chunks of map rows (same result, bounded
    memory). ``impl``: 'auto' takes FlexAttention on CUDA, SDPA elsewhere; 'flex' FlexAttention
    wherever it runs (on a CPU only without autograd: no CPU backward there); 'sdpa' never.
    Profiles name the kernel that ran each call (``coatnet.attention.<kernel>``).
    """

    def __init__(self, in_channels: int, out_channels: int, attn_channels: int, head_dim: int,
                 rel_pos: CachedBiasProvider, qkv_bias: bool = True,
                 max_bias_bytes: Optional[int] = None, impl: str = 'auto'):
        super().__init__()
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f'attention impl {impl!r} is not one of {ATTENTION_IMPLS}')
        if impl == 'flex':
            require_torch(FLEX_ATTENTION, "attention_impl='flex' (FlexAttention)")
        self.impl = impl
        self.max_bias_bytes = checked_max_bias_bytes(max_bias_bytes)
        if attn_channels % head_dim:
            raise ValueError(f'attention width {attn_channels} is not a multiple of head_dim '
                             f'{head_dim}')
        self.num_heads = attn_channels // head_dim
        self.head_dim = head_dim
        self.qkv = nn.Linear(in_channels, 3 * attn_channels, bias=qkv_bias)
        self.rel_pos = rel_pos
        self.proj = nn.Linear(attn_channels, out_channels, bias=qkv_bias)

    def kernel_context(self, x: torch.Tensor, masked: bool, state: TorchState) -> KernelContext:
        """What the kernel choice for the (B, H, W, C) input ``x`` depends on."""
        return KernelContext(device_type=state.device_type or x.device.type, grad=state.grad,
                             tracing=state.tracing, masked=masked, batch=x.shape[0],
                             feat_size=(x.shape[1], x.shape[2]), num_heads=self.num_heads,
                             max_bias_bytes=self.max_bias_bytes, impl=self.impl,
                             head_dim=self.head_dim, torch_version=state.torch_version)

    def run_kernel(self, kernel: Kernel, ctx: KernelContext, state: TorchState, q: torch.Tensor,
                   k: torch.Tensor, v: torch.Tensor,
                   key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``kernel`` on (B, heads, N, d) q, k, v: the bias comes from ``rel_pos``, cached in eval
        mode without autograd outside torch.compile."""
        feat_size = ctx.feat_size
        if kernel in ('traced', 'exported'):
            table = self.rel_pos.table_at(feat_size, traceable=True)
            return graph_attention(q, k, v, table, feat_size, state.tracing, key_padding_mask)
        cache = not (state.compiling or self.training or state.grad and self.rel_pos.requires_grad)
        if kernel == 'dense':
            return dense_attention(q, k, v, self.rel_pos.bias_at(feat_size, cache),
                                   key_padding_mask)
        table = self.rel_pos.table_at(feat_size, cache=cache)
        if kernel == 'flex':
            return flex_relative_attention(q, k, v, table, feat_size)
        if kernel == 'chunked':
            return chunked_attention(q, k, v, table, feat_size, ctx.bias_budget)
        return chunked_sdpa_attention(q, k, v, table, feat_size, ctx.bias_budget, state.grad)

    def forward(self, x: torch.Tensor, key_padding_mask: Optional[torch.Tensor] = None,
                state: Optional[TorchState] = None) -> torch.Tensor:
        """``key_padding_mask``: optional (B, H*W) bool, True where a token is padding that no
        query may attend to (the edges of windows). ``state``: torch's state, when the caller has
        read it already."""
        state = state or read_torch_state()
        batch, height, width, _ = x.shape
        ctx = self.kernel_context(x, key_padding_mask is not None, state)
        kernel = select_kernel(ctx)
        qkv = self.qkv(x).view(batch, height * width, self.num_heads, 3, self.head_dim)
        q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        if state.tracing or state.compiling:  # a profiler range would be traced into the graph
            out = self.run_kernel(kernel, ctx, state, q, k, v, key_padding_mask)
        else:
            with record_function(f'coatnet.attention.{kernel}'):
                out = self.run_kernel(kernel, ctx, state, q, k, v, key_padding_mask)
        channels = self.num_heads * self.head_dim  # not -1: an empty batch leaves it undetermined
        return self.proj(out.transpose(1, 2).reshape(batch, height, width, channels))


class WindowedAttention(RelativeAttention):
    """:class:`RelativeAttention` inside non-overlapping ``window_size`` windows, as Swin's
    ShiftWindowMSA wraps WindowMSA; edge windows are zero-padded and their padded keys masked.
    A subclass, not a holder of one, so that its state-dict keys are the global attention's and
    every checkpoint loads into either."""

    def __init__(self, *args, window_size: Size, **kwargs):
        super().__init__(*args, **kwargs)
        self.window_size = tuple(window_size)

    def forward(self, x: torch.Tensor, key_padding_mask: Optional[torch.Tensor] = None,
                state: Optional[TorchState] = None) -> torch.Tensor:
        if key_padding_mask is not None:
            raise ValueError('windowed attention makes its own key padding mask')
        state = state or read_torch_state()
        feat_size = x.shape[1:3]
        # in an exported graph whether the windows tile the map is known only at run time
        mask = window_padding_mask(x.shape[0], feat_size, self.window_size, x.device,
                                   always=state.tracing is not None)
        out = super().forward(window_partition(x, self.window_size), mask, state)
        return window_unpartition(out, feat_size)

    def extra_repr(self) -> str:
        return f'window_size={self.window_size}'


def build_attention(in_channels: int, out_channels: int, attn_channels: int, head_dim: int,
                    rel_pos: CachedBiasProvider, window_size: Optional[Size] = None,
                    **kwargs) -> RelativeAttention:
    """Global attention, or windowed with ``window_size``."""
    if window_size is None:
        return RelativeAttention(in_channels, out_channels, attn_channels, head_dim, rel_pos,
                                 **kwargs)
    return WindowedAttention(in_channels, out_channels, attn_channels, head_dim, rel_pos,
                             window_size=window_size, **kwargs)
