"""The attention's part of the memory simulation (mmcoatnet/analysis/simulation.py): a stand-in of
fused FlexAttention's memory, since FlexAttention does not run on fake tensors, and a record of the
kernels a simulated step ran."""
import collections
import contextlib
import functools
from typing import Iterator

import torch


class FlexAttentionMemoryStandIn(torch.autograd.Function):
    """What fused FlexAttention holds, without its arithmetic (its output values are not
    computed): the forward keeps q, k, v, the output and the float32 log-sum-exp of each query for
    backward; the backward makes each query's float32 rowsum(dO * O), the gradients of q, k and v
    and a float32 gradient of the bias table, into which the kernel scatters. Nothing N x N."""

    @staticmethod
    def forward(ctx, q, k, v, flat_table):
        out = q.new_empty((*q.shape[:-1], v.shape[-1]))
        logsumexp = q.new_empty(q.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(q, k, v, out, logsumexp, flat_table)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, logsumexp, flat_table = ctx.saved_tensors
        row_dots = torch.empty_like(logsumexp)  # rowsum(dO * O): alive while the gradients are made
        grads = [torch.empty_like(t) for t in (q, k, v)]
        grad_table = (flat_table.new_zeros(flat_table.shape, dtype=torch.float32)
                      if ctx.needs_input_grad[3] else None)
        del row_dots
        return (*grads, grad_table)


def flex_memory_stand_in(q, k, v, flat_table, query_index, key_index, valid_keys):
    """:func:`mmcoatnet.models.kernels.flex.fused_flex_attention`'s signature, its memory only."""
    return FlexAttentionMemoryStandIn.apply(q, k, v, flat_table)


@contextlib.contextmanager
def flex_attention_as_its_memory() -> Iterator[None]:
    """Within it, the flex kernel runs :class:`FlexAttentionMemoryStandIn` in place of compiled
    FlexAttention (whose torch.compile cannot take fake tensors)."""
    from ..models.kernels import flex
    original = flex.fused_flex_attention
    flex.fused_flex_attention = functools.wraps(original)(flex_memory_stand_in)
    try:
        yield
    finally:
        flex.fused_flex_attention = original


@contextlib.contextmanager
def attention_kernels_recorded() -> Iterator[collections.Counter]:
    """Within it, each attention call adds its kernel to the Counter yielded (recomputations in
    backward included), the names the profiler ranges give (docs/architecture.md)."""
    from ..models.attention.layer import RelativeAttention
    calls = collections.Counter()
    original = RelativeAttention.run_kernel

    @functools.wraps(original)
    def run_kernel(self, kernel, *args, **kwargs):
        calls[kernel] += 1
        return original(self, kernel, *args, **kwargs)

    RelativeAttention.run_kernel = run_kernel
    try:
        yield calls
    finally:
        RelativeAttention.run_kernel = original
