"""mmcoatnet/analysis, what the tools measure with, in process (tests/test_tools.py, test_flops.py
and test_compile.py run the tools that use it)."""
import importlib

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from mmcoatnet.analysis.flops import FLOPS_PER_MAC, attention_products_macs
from mmcoatnet.torch_compat import MEMORY_SIMULATION

from helpers import needs_torch


def test_the_attention_products_formula_counts_what_torch_counts_of_the_same_matmuls():
    query, key, value = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    with FlopCounterMode(display=False) as counter:  # softmax is not counted
        (query @ key.transpose(-2, -1)).softmax(-1) @ value
    macs = attention_products_macs(query.shape, key.shape, value.shape)
    assert macs == 2 * 3 * 5 * 7 * (8 + 4)
    assert FLOPS_PER_MAC * macs == counter.get_total_flops()


def patched_attributes():
    """What the simulation replaces: mmcv's extension modules, mmdet's internals, torch's SDPA and
    a function of CUDA's autocast float32 list."""
    roi_align, nms = (importlib.import_module(f'mmcv.ops.{name}') for name in ('roi_align', 'nms'))
    mask_target = importlib.import_module('mmdet.structures.mask.mask_target')
    from mmdet.models.roi_heads.bbox_heads.bbox_head import BBoxHead
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    return [roi_align.ext_module, nms.ext_module, mask_target.mask_target_single,
            SingleRoIExtractor.forward, BBoxHead.refine_bboxes, F.scaled_dot_product_attention,
            F.layer_norm, torch.Tensor.softmax]


@needs_torch(MEMORY_SIMULATION, 'the training-memory simulation')
def test_the_simulation_patches_hold_inside_only_and_are_undone_after_an_error():
    from mmcoatnet.analysis.simulation import simulation_patches
    originals = patched_attributes()
    try:
        with simulation_patches('cuda'):
            inside = patched_attributes()
            raise RuntimeError('a failed step')
    except RuntimeError:
        pass
    assert all(now is not before for now, before in zip(inside, originals))
    assert all(now is before for now, before in zip(patched_attributes(), originals))
