"""BatchNorm then activation, keeping one map for backward instead of two.

Run as two modules, autograd keeps both the BatchNorm input and its output (the activation's input).
Here only the BatchNorm input and the batch statistics are kept; backward recomputes the normalised
map (elementwise, cheap) before the activation's and BatchNorm's gradients. In the MBConv stages at
detection resolution this drops about a third of the saved activations. It applies to plain
``nn.BatchNorm2d`` in training on float32 maps with SiLU or GELU; anything else (SyncBN, which
all-reduces in backward; eval mode; half precision; other activations) runs the modules unchanged.
"""
import math

import torch
import torch.nn as nn


def _silu_grad(y: torch.Tensor) -> torch.Tensor:
    gate = torch.sigmoid(y)
    return gate * (1 + y * (1 - gate))


def _gelu_grad(y: torch.Tensor) -> torch.Tensor:
    cdf = 0.5 * (1 + torch.erf(y * (1 / math.sqrt(2))))
    return cdf + y * torch.exp(-0.5 * y * y) * (1 / math.sqrt(2 * math.pi))


_ACTIVATIONS = {nn.SiLU: (nn.functional.silu, _silu_grad),
                nn.GELU: (nn.functional.gelu, _gelu_grad)}


class _BatchNormActivation(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps, act, act_grad):
        normed, mean, invstd = torch.native_batch_norm(
            x, weight, bias, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(x, weight, bias, mean, invstd)
        ctx.eps, ctx.act_grad = eps, act_grad
        return act(normed)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, bias, mean, invstd = ctx.saved_tensors
        shape = (1, -1) + (1,) * (x.dim() - 2)
        scale = (invstd * weight).view(shape)
        normed = (x - mean.view(shape)) * scale + bias.view(shape)  # recomputed, not kept
        grad_normed = grad_out * ctx.act_grad(normed)
        del normed
        grad_x, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            grad_normed, x, weight, None, None, mean, invstd, True, ctx.eps,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]])
        return grad_x, grad_weight, grad_bias, None, None, None, None, None, None


def _fusable(norm: nn.Module, act: nn.Module, x: torch.Tensor) -> bool:
    activation_ok = type(act) in _ACTIVATIONS and getattr(act, 'approximate', 'none') == 'none'
    return (type(norm) is nn.BatchNorm2d and norm.training and norm.affine and activation_ok
            and x.dtype == torch.float32 and torch.is_grad_enabled())


def norm_act(norm: nn.Module, act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``act(norm(x))``, saving only ``x`` for backward where the pair allows it (see module doc)."""
    if not _fusable(norm, act, x):
        return act(norm(x))
    momentum = 0.0 if norm.momentum is None else norm.momentum
    if norm.track_running_stats and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)  # as nn.BatchNorm2d does
        if norm.momentum is None:  # cumulative moving average
            momentum = 1.0 / float(norm.num_batches_tracked)
    running_mean = norm.running_mean if norm.track_running_stats else None
    running_var = norm.running_var if norm.track_running_stats else None
    act_fn, act_grad = _ACTIVATIONS[type(act)]
    return _BatchNormActivation.apply(x, norm.weight, norm.bias, running_mean, running_var,
                                      momentum, norm.eps, act_fn, act_grad)
