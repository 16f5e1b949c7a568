"""mmcv's multi-scale deformable attention (MSDA, DINO's and Mask2Former's) as one torch.library op,
for the tools that measure a whole model without a GPU.

On a CPU mmcv's ``MultiScaleDeformableAttention`` runs its pytorch fallback, a ``grid_sample`` per
level: torch's FLOP counter has no formula for it, and it holds other tensors than the CUDA kernel a
GPU runs (``MultiScaleDeformableAttnFunction``). Within :func:`deformable_attention_as_one_op` the
fallback goes through :func:`deformable_attention_ops`' op instead:

- its real kernel is mmcv's fallback, so real tensors compute what they computed before;
- its fake kernel gives what the CUDA kernel returns, (batch, queries, heads x channels), and its
  autograd saves what the CUDA Function saves for backward (the value, the spatial shapes, the level
  start index, the sampling locations and the attention weights, the last two cast to the value's
  dtype) and makes the three gradients its backward allocates (value, sampling locations, attention
  weights): a memory simulation holds the CUDA kernel's tensors, not the fallback's;
- ``get_flops.py`` counts it by :func:`mmcoatnet.analysis.flops.deformable_attention_macs`.
"""
import contextlib
import functools
import importlib
from typing import Callable, Dict, Iterator, Tuple

import torch

from ..torch_compat import MEMORY_SIMULATION, require_torch

OP_NAME = 'mmcoatnet_sim::multi_scale_deformable_attn'


def _mmcv_module():
    # by module path: mmcv.ops' __init__ shadows the module names with the classes
    return importlib.import_module('mmcv.ops.multi_scale_deform_attn')


@functools.lru_cache(maxsize=None)
def deformable_attention_ops() -> Dict[str, Callable]:
    """The forward and backward torch.library ops (registered once per process), whose real
    kernels run mmcv's pytorch fallback and its autograd."""
    require_torch(MEMORY_SIMULATION, "mmcv's deformable attention as one op")
    fallback = _mmcv_module().multi_scale_deformable_attn_pytorch  # before any patch: the original

    @torch.library.custom_op(OP_NAME, mutates_args=())
    def forward(value: torch.Tensor, spatial_shapes: torch.Tensor,
                level_start_index: torch.Tensor, sampling_locations: torch.Tensor,
                attention_weights: torch.Tensor) -> torch.Tensor:
        return fallback(value, spatial_shapes, sampling_locations, attention_weights)

    @forward.register_fake
    def _(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        batch, _, heads, channels = value.shape
        return value.new_empty((batch, sampling_locations.shape[1], heads * channels))

    @torch.library.custom_op(f'{OP_NAME}_backward', mutates_args=())
    def backward_op(value: torch.Tensor, spatial_shapes: torch.Tensor,
                    level_start_index: torch.Tensor, sampling_locations: torch.Tensor,
                    attention_weights: torch.Tensor,
                    grad_output: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs = [t.detach().requires_grad_() for t in
                  (value, sampling_locations, attention_weights)]
        with torch.enable_grad():
            output = fallback(inputs[0], spatial_shapes, inputs[1], inputs[2])
        return tuple(torch.autograd.grad(output, inputs, grad_output))

    @backward_op.register_fake
    def _(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
          grad_output):
        return tuple(torch.empty_like(t) for t in (value, sampling_locations, attention_weights))

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def backward(ctx, grad_output):
        value, spatial_shapes, level_start_index, locations, weights = ctx.saved_tensors
        grad_value, grad_locations, grad_weights = backward_op(
            value, spatial_shapes, level_start_index, locations, weights, grad_output)
        return grad_value, None, None, grad_locations, grad_weights

    forward.register_autograd(backward, setup_context=setup_context)
    return dict(forward=forward, backward=backward_op)


def _through_the_op(op: Callable, value: torch.Tensor, value_spatial_shapes: torch.Tensor,
                    sampling_locations: torch.Tensor,
                    attention_weights: torch.Tensor) -> torch.Tensor:
    """mmcv's fallback's signature, run as mmcv's CUDA Function runs: the locations and weights in
    the value's dtype, the level start index beside the spatial shapes."""
    level_start_index = torch.cat((value_spatial_shapes.new_zeros((1,)),
                                   value_spatial_shapes.prod(1).cumsum(0)[:-1]))
    return op(value, value_spatial_shapes, level_start_index, sampling_locations.type_as(value),
              attention_weights.type_as(value))


@contextlib.contextmanager
def deformable_attention_as_one_op() -> Iterator[None]:
    """Within it, mmcv's MultiScaleDeformableAttention on a CPU runs the forward op of
    :func:`deformable_attention_ops` in place of its pytorch fallback (the same values on real
    tensors)."""
    op = deformable_attention_ops()['forward']  # registered before the patch reads the original
    module = _mmcv_module()
    original = module.multi_scale_deformable_attn_pytorch
    module.multi_scale_deformable_attn_pytorch = functools.wraps(original)(
        functools.partial(_through_the_op, op))
    try:
        yield
    finally:
        module.multi_scale_deformable_attn_pytorch = original
