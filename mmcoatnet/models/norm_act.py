"""BatchNorm then activation, keeping one map for backward instead of two.

Run as two modules, autograd keeps both the BatchNorm input and its output (the activation's input).
Here only the BatchNorm input and the batch statistics are kept; backward recomputes the normalised
map (elementwise, cheap) before the activation's and BatchNorm's gradients. In the MBConv stages at
detection resolution this drops about a third of the saved activations; a squeeze-excitation
gate applied just before the BatchNorm is folded in the same way. It applies to plain
``nn.BatchNorm2d`` in training on float32 maps with SiLU or GELU; anything else (SyncBN, which
all-reduces in backward; eval mode; half precision; other activations) runs the modules unchanged.
"""
import math
from typing import Optional

import torch
import torch.nn as nn

from ..torch_compat import is_compiling


# Activation derivatives at y, computed in place: backward of a large map holds few temporaries.
def _silu_grad(y: torch.Tensor) -> torch.Tensor:
    gate = torch.sigmoid(y)
    return torch.rsub(gate, 1).mul_(y).add_(1).mul_(gate)  # s (1 + y (1 - s))


def _gelu_grad(y: torch.Tensor) -> torch.Tensor:
    density = (y * y).mul_(-0.5).exp_().mul_(y).mul_(1 / math.sqrt(2 * math.pi))  # y phi(y)
    cdf = (y * (1 / math.sqrt(2))).erf_().add_(1).mul_(0.5)  # Phi(y)
    return cdf.add_(density)


_ACTIVATIONS = {nn.SiLU: (nn.functional.silu, _silu_grad),
                nn.GELU: (nn.functional.gelu, _gelu_grad)}


class _BatchNormActivation(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, scale, weight, bias, running_mean, running_var, momentum, eps, act,
                act_grad):
        scaled = x if scale is None else x * scale
        normed, mean, invstd = torch.native_batch_norm(
            scaled, weight, bias, running_mean, running_var, True, momentum, eps)
        del scaled
        ctx.save_for_backward(x, scale, weight, bias, mean, invstd)
        ctx.eps, ctx.act_grad = eps, act_grad
        return act(normed)

    @staticmethod
    def backward(ctx, grad_out):
        x, scale, weight, bias, mean, invstd = ctx.saved_tensors
        scaled = x if scale is None else x * scale  # recomputed, not kept
        shape = (1, -1) + (1,) * (x.dim() - 2)
        normed = (scaled - mean.view(shape)).mul_((invstd * weight).view(shape))
        normed.add_(bias.view(shape))
        grad_normed = ctx.act_grad(normed).mul_(grad_out)
        del normed
        needs_x, needs_scale, needs_weight, needs_bias = ctx.needs_input_grad[:4]
        grad_scaled, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            grad_normed, scaled, weight, None, None, mean, invstd, True, ctx.eps,
            [needs_x or needs_scale, needs_weight, needs_bias])
        grad_x = grad_scale = None
        if scale is None:
            grad_x = grad_scaled
        else:
            if needs_scale:
                grad_scale = (grad_scaled * x).sum(dim=tuple(range(2, x.dim())), keepdim=True)
                grad_scale = grad_scale.sum_to_size(scale.shape)
            if needs_x:
                grad_x = grad_scaled * scale
        return grad_x, grad_scale, grad_weight, grad_bias, None, None, None, None, None, None


def _fusable(norm: nn.Module, act: nn.Module, x: torch.Tensor) -> bool:
    activation_ok = type(act) in _ACTIVATIONS and getattr(act, 'approximate', 'none') == 'none'
    # not under torch.compile: its partitioner recomputes the norm itself, and dynamo fails to
    # trace this Function's backward with dynamic sizes
    return (type(norm) is nn.BatchNorm2d and norm.training and norm.affine and activation_ok
            and x.dtype == torch.float32 and torch.is_grad_enabled()
            and not is_compiling())


def norm_act(norm: nn.Module, act: nn.Module, x: torch.Tensor,
             scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``act(norm(x * scale))`` (``scale``: an optional per-channel gate such as
    squeeze-excitation's), saving only ``x`` and ``scale`` for backward where the pair allows it
    (see the module doc)."""
    if not _fusable(norm, act, x):
        return act(norm(x if scale is None else x * scale))
    momentum = 0.0 if norm.momentum is None else norm.momentum
    if norm.track_running_stats and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)  # as nn.BatchNorm2d does
        if norm.momentum is None:  # cumulative moving average
            momentum = 1.0 / float(norm.num_batches_tracked)
    running_mean = norm.running_mean if norm.track_running_stats else None
    running_var = norm.running_var if norm.track_running_stats else None
    act_fn, act_grad = _ACTIVATIONS[type(act)]
    return _BatchNormActivation.apply(x, scale, norm.weight, norm.bias, running_mean, running_var,
                                      momentum, norm.eps, act_fn, act_grad)
