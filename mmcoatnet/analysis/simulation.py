"""A training step's memory counted without its arithmetic: fake tensors (shapes, dtypes and
storages, no data) run the whole step, and torch's ``MemTracker`` counts every storage alive.

What a real step has and fake tensors lack is supplied here:

- mmcv's compiled ops (RoIAlign, NMS) are plain pybind functions that read data pointers. They are
  routed through ``torch.library`` custom ops whose real kernels call mmcv and whose fake kernels
  return the right shapes (RoIAlign writes into outputs mmcv allocates itself; NMS keeps every box,
  the upper bound, which mmdet then cuts to its ``max_per_img``). For a GPU's step, mmcv's
  multi-scale deformable attention runs as a ``torch.library`` op that holds what its CUDA kernel
  holds, not as the CPU fallback's ``grid_sample`` (``deformable_attention.py``).
- DINO and Mask2Former: feature sizes as tensors keep their values, Hungarian matching matches by
  shape, mmseg's Mask2Former finds at most its classes in a label map
  (``query_heads_simulation.py``).
- Ops whose output size depends on values (``nonzero``, boolean indexing, ``unique``,
  ``masked_select``) get their upper bound: every element selected. Samplers and ``max_per_img``
  bound what the heads see, so the RoI heads run on as many RoIs as a real step at most.
- Values read back into Python (``.item()``) are 1 (True for a bool, so that checks such as
  "any anchor inside the image?" take the normal path).
- mmdet crops its mask targets in numpy: they are made by shape instead (positive RoIs x mask
  size), and the numpy crops, a few MB, are not counted. Cascade's refinement is told the
  number of images, which bounds the image ids it asserts on; the RoI extractor takes every RoI
  from one FPN level (each RoI has one level, chosen by value).
- The data preprocessor runs for real before the step (its padding sizes come from values).

Every patch of mmcv, mmdet and torch holds only inside :func:`simulation_patches`, which puts the
originals back on leaving: the tool's process goes on to build and run models for real.

Simulating a GPU's step on a machine without one: the tensors stay fake *CPU* tensors, because
fake CUDA tensors have no backward without a device (the autograd engine asks the driver for a
context) and ``torch.autocast('cuda')`` disables itself. What a GPU does differently is applied
instead: every attention chooses its kernels as on CUDA, SDPA runs as the memory-efficient kernel
(:func:`cuda_memory_efficient_attention`), FlexAttention, which cannot run on fake tensors, as a
stand-in that holds what it holds (``attention_simulation.py``), and under CPU autocast the ops
that CUDA autocast keeps in float32 (norms, softmax, losses, reductions) run in float32
(:func:`cuda_autocast_policy`).
"""
import contextlib
import functools
import importlib
from typing import Callable, Dict, Iterator, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.utils import _pytree as pytree

from ..models.kernels import kernels_chosen_for
from ..torch_compat import MEMORY_SIMULATION, require_torch
from .attention_simulation import flex_attention_as_its_memory
from .deformable_attention import deformable_attention_as_one_op
from .fake_values import FakeDeepcopyAsClone, UpperBoundDataDependentOps
from .patching import replaced
from .query_heads_simulation import query_heads_on_fake_tensors

aten = torch.ops.aten


# ---------------------------------------------------------------------- mmcv's ops, with fake
# kernels

def _mmcv_op_modules():
    # by module path: mmcv.ops' __init__ shadows the module names with the functions
    return importlib.import_module('mmcv.ops.roi_align'), importlib.import_module('mmcv.ops.nms')


def _roi_align_op(name: str, kernel: Callable, mutated: tuple) -> Callable:
    """A torch.library op around one of mmcv's RoIAlign kernels, whose fake kernel does nothing:
    what it writes into was allocated by mmcv, with its shape, before the call."""

    @torch.library.custom_op(f'mmcoatnet_sim::{name}', mutates_args=mutated)
    def op(t0: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor, t3: torch.Tensor,
           t4: torch.Tensor, aligned_height: int, aligned_width: int, spatial_scale: float,
           sampling_ratio: int, pool_mode: int, aligned: bool) -> None:
        kernel(t0, t1, t2, t3, t4, aligned_height=aligned_height, aligned_width=aligned_width,
               spatial_scale=spatial_scale, sampling_ratio=sampling_ratio, pool_mode=pool_mode,
               aligned=aligned)

    op.register_fake(lambda *args: None)
    return op


@functools.lru_cache(maxsize=None)
def _register_mmcv_custom_ops() -> Dict[str, Callable]:
    """torch.library ops wrapping mmcv's RoIAlign and NMS kernels (registered once per process):
    mmcv 2.1 calls them through pybind, which FakeTensorMode cannot intercept."""
    mmcv_roi_align, mmcv_nms = _mmcv_op_modules()
    roi_align_ext, nms_ext = mmcv_roi_align.ext_module, mmcv_nms.ext_module

    # mmcv's RoIAlign kernels take five tensors, writing into some of them, then the same options
    roi_align_forward = _roi_align_op('roi_align_forward', roi_align_ext.roi_align_forward,
                                      mutated=('t2', 't3', 't4'))  # output, argmax_y, argmax_x
    roi_align_backward = _roi_align_op('roi_align_backward', roi_align_ext.roi_align_backward,
                                       mutated=('t4',))  # grad_input

    @torch.library.custom_op('mmcoatnet_sim::nms', mutates_args=())
    def nms(bboxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
            offset: int) -> torch.Tensor:
        return nms_ext.nms(bboxes, scores, iou_threshold=iou_threshold, offset=offset)

    @nms.register_fake
    def _(bboxes, scores, iou_threshold, offset):
        return bboxes.new_empty((bboxes.shape[0],), dtype=torch.long)  # every box kept: the bound

    return dict(roi_align_forward=roi_align_forward, roi_align_backward=roi_align_backward,
                nms=nms)


class _ExtModule:
    """Stands for mmcv's extension module: the named kernels go to the torch.library ops, any other
    name to mmcv's own. Keyword arguments are passed on as mmcv's callers give them."""

    def __init__(self, original, ops: Dict[str, Callable]):
        self._original, self._ops = original, ops

    def __getattr__(self, name):
        if name in self._ops:
            op = self._ops[name]
            return lambda *args, **kwargs: op(*args, **kwargs)
        return getattr(self._original, name)


@contextlib.contextmanager
def mmcv_ops_with_fake_kernels() -> Iterator[None]:
    """Within it, mmcv's RoIAlign and NMS accept fake tensors (and still compute on real ones)."""
    ops = _register_mmcv_custom_ops()
    modules = _mmcv_op_modules()
    originals = [module.ext_module for module in modules]
    try:
        for module, original in zip(modules, originals):
            module.ext_module = _ExtModule(original, ops)
        yield
    finally:
        for module, original in zip(modules, originals):
            module.ext_module = original


def mmdet_mask_targets_by_shape():
    """Within it, mmdet's mask targets are made by shape: mmdet crops them in numpy, which fake
    tensors cannot enter. They are (positive RoIs, mask size) floats, as mmdet returns them."""

    def make(original):
        def mask_target_by_shape(pos_proposals, pos_assigned_gt_inds, gt_masks, cfg):
            if not isinstance(pos_proposals, FakeTensor):
                return original(pos_proposals, pos_assigned_gt_inds, gt_masks, cfg)
            size = cfg.mask_size
            size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
            return pos_proposals.new_empty((pos_proposals.size(0), *size))
        return mask_target_by_shape

    return replaced('mmdet.structures.mask.mask_target', '', 'mask_target_single', make)


def mmdet_rois_on_one_level():
    """Within it, mmdet's RoI extractor takes every fake RoI from the finest FPN level. Each RoI
    belongs to one level, but which is decided by values: the upper bound would give every level
    all the RoIs. One level gives the right size of RoI features (and one level's gradient map
    where a real step has up to one per level)."""

    def make(original):
        def forward(self, feats, rois, roi_scale_factor=None):
            if isinstance(rois, FakeTensor) and roi_scale_factor is None:
                feats = feats[:1]
            return original(self, feats, rois, roi_scale_factor)
        return forward

    return replaced('mmdet.models.roi_heads.roi_extractors.single_level_roi_extractor',
                     'SingleRoIExtractor', 'forward', make)


def mmdet_cascade_refinement_per_image():
    """Within it, mmdet's Cascade refinement sees at most one image id per image: it asserts so on
    the ``unique`` of the RoIs' image ids, whose upper bound would otherwise be one id per RoI."""

    def make(original):
        def refine_bboxes(self, sampling_results, bbox_results, batch_img_metas):
            UpperBoundDataDependentOps.unique_at_most = len(batch_img_metas)
            try:
                return original(self, sampling_results, bbox_results, batch_img_metas)
            finally:
                UpperBoundDataDependentOps.unique_at_most = None
        return refine_bboxes

    return replaced('mmdet.models.roi_heads.bbox_heads.bbox_head', 'BBoxHead',
                     'refine_bboxes', make)


# -------------------------------------------------------------------------------- the simulated
# step

# CUDA autocast's float32 list (PyTorch's AMP docs, "CUDA Ops that can autocast to float32"), the
# part that matters for memory, as (owner, name); CPU autocast runs these in half precision
_CUDA_AUTOCAST_FLOAT32 = (
    [(F, name) for name in ('layer_norm', 'group_norm', 'softmax', 'log_softmax', 'normalize',
                            'cross_entropy', 'binary_cross_entropy_with_logits', 'nll_loss',
                            'l1_loss', 'smooth_l1_loss', 'mse_loss', 'softplus')]
    + [(torch, name) for name in ('softmax', 'log_softmax', 'exp', 'log', 'pow', 'sum', 'norm',
                                  'cumsum', 'rsqrt', 'reciprocal')]
    + [(torch.Tensor, name) for name in ('softmax', 'log_softmax', 'exp', 'log', 'pow', 'sum',
                                         'norm')])


@contextlib.contextmanager
def cuda_autocast_policy() -> Iterator[None]:
    """Within it, under CPU autocast, the ops CUDA autocast keeps in float32 run in float32 (inputs
    cast up), so that a CPU simulation holds the tensors a GPU's AMP step holds. CUDA autocast
    itself cannot be used: it disables itself without a GPU, and fake CUDA tensors have no
    backward there. The functions are replaced, not intercepted by a TorchFunctionMode: the
    recomputation of checkpointed blocks in backward runs outside such modes."""
    originals = [(owner, name, getattr(owner, name)) for owner, name in _CUDA_AUTOCAST_FLOAT32]

    def in_float32(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            if not torch.is_autocast_enabled('cpu'):
                return func(*args, **kwargs)
            args, kwargs = pytree.tree_map_only(torch.Tensor, _half_to_float32, (args, kwargs))
            with torch.autocast('cpu', enabled=False):
                return func(*args, **kwargs)
        return wrapper

    try:
        for owner, name, func in originals:
            setattr(owner, name, in_float32(func))
        yield
    finally:
        for owner, name, func in originals:
            setattr(owner, name, func)


def cuda_memory_efficient_attention():
    """Within it, ``F.scaled_dot_product_attention`` runs as the memory-efficient kernel a GPU picks
    for a bias that needs a gradient: it saves the output and the log-sum-exp, no probability
    matrix (CPU's SDPA falls back to the math kernel, which saves one)."""

    def make(original):
        def memory_efficient(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                             scale=None, **kwargs):
            if kwargs:
                return original(query, key, value, attn_mask, dropout_p, is_causal, scale, **kwargs)
            bias = None if attn_mask is None else attn_mask.expand(
                *query.shape[:-1], key.shape[-2])  # the kernel takes the bias at full size
            needs_grad = torch.is_grad_enabled() and any(
                t is not None and t.requires_grad for t in (query, key, value, bias))
            return aten._scaled_dot_product_efficient_attention(
                query, key, value, bias, needs_grad, dropout_p, is_causal, scale=scale)[0]
        return memory_efficient

    return replaced('torch.nn.functional', '', 'scaled_dot_product_attention', make)


def _half_to_float32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def memory_breakdown(snapshot: dict) -> Dict[str, int]:
    """MemTracker's per-reference-type bytes as parameters / gradients / optimizer state /
    activations (buffers go with parameters; temporaries and others with activations)."""
    by_name = {getattr(kind, 'value', kind): int(size) for kind, size in snapshot.items()}
    return dict(parameters=by_name.get('Parameter', 0) + by_name.get('Buffer', 0),
                gradients=by_name.get('Gradient', 0),
                optimizer_state=by_name.get('Optstate', 0),
                activations=(by_name.get('Activation', 0) + by_name.get('Temp', 0)
                             + by_name.get('Other', 0)),
                total=by_name.get('Total', 0))


def _global_peak_tracker():
    """torch's MemTracker keeping the global peak only: its per-module peaks take a pass over every
    module at every op, quadratic for a whole detector (most of a simulation's time)."""
    from torch.distributed._tools.mem_tracker import _TOTAL_KEY, MemTracker

    class GlobalPeakMemTracker(MemTracker):

        def _update_peak_stats(self, peak_state) -> None:
            for device, snapshot in self._curr_mem_snap.items():
                if self._peak_mem.get(device, 0) < snapshot[_TOTAL_KEY]:
                    self._peak_mem[device] = snapshot[_TOTAL_KEY]
                    self._peak_mem_snap[device] = dict(snapshot)

    return GlobalPeakMemTracker()


@contextlib.contextmanager
def simulation_patches(target: str = 'cpu') -> Iterator[None]:
    """Within it, mmcv's ops and mmdet's internals take fake tensors and, for ``target`` 'cuda',
    the attention chooses its kernels and torch's SDPA and autocast act as on a GPU; every original
    is back on leaving, an error included."""
    with mmcv_ops_with_fake_kernels(), mmdet_mask_targets_by_shape(), \
            mmdet_rois_on_one_level(), mmdet_cascade_refinement_per_image(), \
            query_heads_on_fake_tensors(), contextlib.ExitStack() as gpu_kernels:
        if target == 'cuda':
            gpu_kernels.enter_context(deformable_attention_as_one_op())
            gpu_kernels.enter_context(cuda_autocast_policy())
            gpu_kernels.enter_context(cuda_memory_efficient_attention())
            gpu_kernels.enter_context(kernels_chosen_for('cuda'))
            gpu_kernels.enter_context(flex_attention_as_its_memory())
        yield


def simulate_training_memory(build_model: Callable[[], nn.Module],
                             build_optim_wrapper: Callable[[nn.Module], object],
                             batch: dict, target: str = 'cpu',
                             amp_dtype: Optional[torch.dtype] = None, steps: int = 2) -> dict:
    """Peak memory of ``steps`` training steps (``model.train_step``) run on fake CPU tensors,
    with autocast to ``amp_dtype`` if given, as a dict of bytes (:func:`memory_breakdown`).
    ``target`` 'cuda' takes a GPU's choices: attention kernels chosen for CUDA, the memory-efficient
    SDPA kernel and CUDA's autocast policy (:func:`cuda_autocast_policy`). The model and its
    optimizer wrapper are built inside the fake mode by the callables given. ``batch`` is the data
    preprocessor's output, computed for real beforehand: its padding sizes come from values, which
    fake tensors lack."""
    require_torch(MEMORY_SIMULATION, 'the training-memory simulation')
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)  # the batch arrives as real tensors
    with simulation_patches(target), fake_mode:
        model = build_model()
        optim_wrapper = build_optim_wrapper(model)
        if amp_dtype is not None:  # as AmpOptimWrapper.optim_context, which needs a real GPU
            optim_wrapper.optim_context = lambda module: torch.autocast('cpu', dtype=amp_dtype)
        # the step makes its own copy of the batch, as the preprocessor would
        model.data_preprocessor.forward = lambda data, training=False: dict(
            inputs=batch['inputs'].to('cpu', copy=True),
            data_samples=[sample.to('cpu', copy=True) for sample in batch['data_samples']])
        tracker = _global_peak_tracker()
        tracker.track_external(model, optim_wrapper.optimizer)
        with tracker, FakeDeepcopyAsClone(), UpperBoundDataDependentOps():
            for _ in range(steps):  # the optimizer states appear in the first step
                model.train_step(batch, optim_wrapper)
                tracker.reset_mod_stats()  # per-module records only; the peak is kept
        peak = tracker.get_tracker_snapshot('peak')
    return memory_breakdown(peak[torch.device('cpu')])
