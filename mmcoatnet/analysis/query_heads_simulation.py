"""The query-based heads' part of the memory simulation (mmcoatnet/analysis/simulation.py): what
DINO and Mask2Former need to run on fake tensors, each a scoped patch that puts the original back.

- Feature-map sizes as tensors (``torch._shape_as_tensor``, then the spatial shapes and level start
  indices built from them) keep their values: DINO's and the pixel decoder's loops, reference points
  and splits read them back into Python, where a fake tensor has no value.
- DINO's denoising queries are collated by each image's number of objects, read back from a
  tensor of image indices, which keeps its values too.
- Hungarian matching (scipy's ``linear_sum_assignment`` on a cost matrix moved to the CPU) matches
  by shape: min(queries, objects) pairs, as many as a real matching makes; the assignment, and
  Mask2Former's mask weights made from it, keep their values, so the heads' positives (their mask
  targets at the padded image's size) are that many, not every query.
- mmseg's Mask2Former makes one mask per class of the label map, found by ``unique``: the label
  maps keep their values, so the masks are as many as the map's classes (else at most the head's
  classes, not one per pixel).

Values kept are read as they are (``.item()``, ``nonzero``); every other value-dependent size keeps
its upper bound. mmcv's multi-scale deformable attention runs as the CUDA kernel's memory where the
simulation is a GPU's (``deformable_attention.py``); point sampling (``grid_sample``) and ``topk``
run on fake tensors as they are.
"""
import contextlib
import functools
from typing import Iterator

import numpy as np
import torch
import torch._subclasses.fake_tensor as fake_tensor_module
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils._python_dispatch import _disable_current_modes

from .fake_values import UpperBoundDataDependentOps, values_known
from .patching import replaced

# a fake tensor of at most this many elements made from known values keeps them, and so does what
# is computed from such tensors alone: spatial shapes and level start indices, and an assignment of
# DINO's 900 queries
KNOWN_VALUES_ELEMENTS = 1024


@contextlib.contextmanager
def shape_tensors_carry_values() -> Iterator[None]:
    """Within it, ``torch._shape_as_tensor`` of a fake tensor is a fake tensor that keeps its
    values, as does any small tensor made from Python numbers and what is computed from such
    tensors alone (FakeTensorMode's constants, raised from one element to
    :data:`KNOWN_VALUES_ELEMENTS`);
    ``.item()`` and ``nonzero`` of one read its values (``UpperBoundDataDependentOps``)."""
    original_shape_as_tensor = torch._shape_as_tensor
    original_limit = fake_tensor_module.CONSTANT_NUMEL_LIMIT

    @functools.wraps(original_shape_as_tensor)
    def shape_as_tensor(tensor):
        if isinstance(tensor, FakeTensor):  # torch's own reads the fake tensor's missing data
            return torch.tensor(tuple(tensor.shape), dtype=torch.long)
        return original_shape_as_tensor(tensor)

    torch._shape_as_tensor = shape_as_tensor
    fake_tensor_module.CONSTANT_NUMEL_LIMIT = max(original_limit, KNOWN_VALUES_ELEMENTS)
    try:
        yield
    finally:
        torch._shape_as_tensor = original_shape_as_tensor
        fake_tensor_module.CONSTANT_NUMEL_LIMIT = original_limit


@contextlib.contextmanager
def hungarian_matching_by_shape() -> Iterator[None]:
    """Within it, mmdet's HungarianAssigner matches a fake cost matrix (queries x objects) by shape:
    the first min(queries, objects) queries to as many objects, the number of pairs a real matching
    makes (scipy reads the matrix's values, which a fake tensor lacks). The assignment keeps its
    values, so the heads' positives are that many, not every query."""
    module = 'mmdet.models.task_modules.assigners.hungarian_assigner'

    def make_matching(original):
        def linear_sum_assignment(cost, *args, **kwargs):
            if not isinstance(cost, FakeTensor):
                return original(cost, *args, **kwargs)
            pairs = np.arange(min(cost.shape))
            return pairs, pairs.copy()
        return linear_sum_assignment

    def make_assign(original):
        def assign(self, pred_instances, gt_instances, *args, **kwargs):
            result = original(self, pred_instances, gt_instances, *args, **kwargs)
            if isinstance(result.gt_inds, FakeTensor):
                matched = min(result.gt_inds.numel(), len(gt_instances))
                gt_inds = np.zeros(result.gt_inds.numel(), dtype=np.int64)
                gt_inds[:matched] = np.arange(1, matched + 1)  # query i -> object i, 0 unmatched
                result.gt_inds = torch.tensor(gt_inds)
            return result
        return assign

    with replaced(module, '', 'linear_sum_assignment', make_matching), \
            replaced(module, 'HungarianAssigner', 'assign', make_assign):
        yield


def dino_denoising_queries_by_image():
    """Within it, DINO's denoising queries are collated by each image's number of objects, which
    mmdet reads back from a tensor of image indices (a ``full_like`` of each image's labels): those
    indices keep their values (FakeTensorMode's constants, for as many elements as the objects)."""

    def make(original):
        def generate_queries(self, batch_data_samples):
            objects = sum(len(sample.gt_instances) for sample in batch_data_samples)
            full_like, limit = torch.full_like, fake_tensor_module.CONSTANT_NUMEL_LIMIT

            def full_like_with_values(tensor, fill_value, **kwargs):
                if not isinstance(tensor, FakeTensor) or kwargs:
                    return full_like(tensor, fill_value, **kwargs)
                return torch.tensor(np.full(tuple(tensor.shape), fill_value), dtype=tensor.dtype)

            torch.full_like = full_like_with_values
            fake_tensor_module.CONSTANT_NUMEL_LIMIT = max(limit, objects)  # more objects than usual
            try:
                return original(self, batch_data_samples)
            finally:
                torch.full_like, fake_tensor_module.CONSTANT_NUMEL_LIMIT = full_like, limit
        return generate_queries

    return replaced('mmdet.models.layers.transformer.dino_layers', 'CdnQueryGenerator',
                     '__call__', make)


def mask2former_mask_weights_known():
    """Within it, mmdet's Mask2Former keeps the values of each image's mask weights (1 for the
    matched queries), which its loss selects the predicted masks by: as many as the matched objects,
    the same number as the mask targets."""

    def make(original):
        def get_targets_single(self, cls_score, mask_pred, gt_instances, img_meta):
            targets = list(original(self, cls_score, mask_pred, gt_instances, img_meta))
            mask_weights, pos_inds = targets[3], targets[4]
            if isinstance(mask_weights, FakeTensor) and values_known(pos_inds):
                weights = np.zeros(mask_weights.shape, dtype=np.float32)
                with _disable_current_modes():  # else the modes would make the real values fake
                    weights[pos_inds.constant.numpy()] = 1
                targets[3] = torch.tensor(weights, dtype=mask_weights.dtype)
            return tuple(targets)
        return get_targets_single

    return replaced('mmdet.models.dense_heads.mask2former_head', 'Mask2FormerHead',
                     '_get_targets_single', make)


def label_maps_keep_their_values():
    """Within it, a label map (mmengine's PixelData of integers) copied into the fake mode keeps
    its values, from which mmseg's Mask2Former finds the classes present (``unique``): as many
    masks as the map's classes."""

    def make(original):
        def to(self, *args, **kwargs):
            copied = original(self, *args, **kwargs)
            for key, value in self.items():
                fake = getattr(copied, key)
                if isinstance(fake, FakeTensor) and not isinstance(value, FakeTensor) and \
                        not value.is_floating_point():
                    with _disable_current_modes():  # a real copy of the values, kept beside
                        fake.constant = value.to(*args, **kwargs).clone()
            return copied
        return to

    return replaced('mmengine.structures.pixel_data', 'PixelData', 'to', make)


def mask2former_seg_classes_bounded():
    """Within it, mmseg's Mask2Former finds at most its head's number of classes in each fake label
    map whose values are unknown (the ``unique`` of the map, whose default bound is one class per
    pixel)."""

    def make(original):
        def seg_data_to_instance_data(self, batch_data_samples):
            UpperBoundDataDependentOps.unique_at_most = self.num_classes
            try:
                return original(self, batch_data_samples)
            finally:
                UpperBoundDataDependentOps.unique_at_most = None
        return seg_data_to_instance_data

    return replaced('mmseg.models.decode_heads.mask2former_head', 'Mask2FormerHead',
                     '_seg_data_to_instance_data', make)


@contextlib.contextmanager
def query_heads_on_fake_tensors() -> Iterator[None]:
    """Within it, DINO and Mask2Former run on fake tensors: every patch of this module."""
    with shape_tensors_carry_values(), hungarian_matching_by_shape(), \
            dino_denoising_queries_by_image(), mask2former_mask_weights_known(), \
            label_maps_keep_their_values(), mask2former_seg_classes_bounded():
        yield
