"""mmcoatnet/analysis, what the tools measure with, in process (tests/test_tools.py, test_flops.py
and test_compile.py run the tools that use it)."""
import importlib

import torch
import torch._subclasses.fake_tensor as fake_tensor_module
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
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
    """What the simulation replaces: mmcv's extension modules and deformable attention, mmdet's and
    mmseg's internals, torch's SDPA, shape tensors and fake constants, and a function of CUDA's
    autocast float32 list."""
    roi_align, nms, deformable = (importlib.import_module(f'mmcv.ops.{name}') for name in
                                  ('roi_align', 'nms', 'multi_scale_deform_attn'))
    mask_target = importlib.import_module('mmdet.structures.mask.mask_target')
    hungarian = importlib.import_module('mmdet.models.task_modules.assigners.hungarian_assigner')
    from mmdet.models.dense_heads import Mask2FormerHead
    from mmdet.models.layers.transformer.dino_layers import CdnQueryGenerator
    from mmdet.models.roi_heads.bbox_heads.bbox_head import BBoxHead
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    from mmseg.models.decode_heads import Mask2FormerHead as SegMask2FormerHead
    return [roi_align.ext_module, nms.ext_module, mask_target.mask_target_single,
            SingleRoIExtractor.forward, BBoxHead.refine_bboxes, F.scaled_dot_product_attention,
            F.layer_norm, torch.Tensor.softmax, deformable.multi_scale_deformable_attn_pytorch,
            torch._shape_as_tensor, fake_tensor_module.CONSTANT_NUMEL_LIMIT,
            hungarian.linear_sum_assignment, hungarian.HungarianAssigner.assign,
            CdnQueryGenerator.__call__, Mask2FormerHead._get_targets_single,
            SegMask2FormerHead._seg_data_to_instance_data]


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


class OpsRun(TorchDispatchMode):
    """The names of the ops that ran."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


@needs_torch(MEMORY_SIMULATION, 'the training-memory simulation')
def test_the_gpu_simulation_runs_deformable_attention_holding_what_its_cuda_kernel_holds():
    """mmcv's MultiScaleDeformableAttention, the real module on fake tensors under the GPU's
    patches and float16 autocast: its core is one op, not the CPU fallback's grid_sample; autograd
    saves what mmcv's CUDA Function saves (value, spatial shapes, level start index, sampling
    locations and attention weights in the value's dtype) and backward makes their gradients."""
    from mmcv.ops import MultiScaleDeformableAttention

    from mmcoatnet.analysis.fake_values import UpperBoundDataDependentOps
    from mmcoatnet.analysis.simulation import simulation_patches
    saved, ops = [], OpsRun()
    with simulation_patches('cuda'), FakeTensorMode(allow_non_fake_inputs=True):
        attention = MultiScaleDeformableAttention(embed_dims=32, num_heads=4, num_levels=2,
                                                  num_points=3, batch_first=True)
        spatial_shapes, level_start_index = torch.tensor([[6, 8], [3, 4]]), torch.tensor([0, 48])
        query = torch.randn(2, 5, 32, requires_grad=True)
        value = torch.randn(2, 60, 32, requires_grad=True)
        reference_points = torch.rand(2, 5, 2, 2)
        with UpperBoundDataDependentOps(), torch.autocast('cpu', dtype=torch.float16), \
                torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t,
                                                         lambda t: t), ops:
            output = attention(query, value=value, reference_points=reference_points,
                               spatial_shapes=spatial_shapes, level_start_index=level_start_index)
        with ops:
            output.float().sum().backward()
    assert output.shape == (2, 5, 32)
    assert 'mmcoatnet_sim.multi_scale_deformable_attn' in ops.names
    assert 'mmcoatnet_sim.multi_scale_deformable_attn_backward' in ops.names
    assert not any('grid_sampler' in name for name in ops.names)
    shapes = {(tuple(t.shape), t.dtype) for t in saved}
    assert {((2, 60, 4, 8), torch.float16), ((2, 2), torch.long), ((2,), torch.long),
            ((2, 5, 4, 2, 3, 2), torch.float16), ((2, 5, 4, 2, 3), torch.float16)} <= shapes
    assert query.grad.shape == query.shape and value.grad.shape == value.shape


@needs_torch(MEMORY_SIMULATION, 'the training-memory simulation')
def test_hungarian_matching_on_fake_tensors_makes_as_many_positives_as_a_real_matching():
    import mmdet.models  # noqa: F401  (registers the match costs)
    from mmdet.models.task_modules.assigners import HungarianAssigner
    from mmengine.structures import InstanceData

    from mmcoatnet.analysis.fake_values import UpperBoundDataDependentOps
    from mmcoatnet.analysis.simulation import simulation_patches
    assigner = HungarianAssigner(match_costs=[dict(type='mmdet.ClassificationCost', weight=1.0),
                                              dict(type='mmdet.BBoxL1Cost', weight=5.0)])
    with simulation_patches('cuda'), FakeTensorMode(allow_non_fake_inputs=True):
        predictions = InstanceData(scores=torch.randn(10, 80), bboxes=torch.rand(10, 4))
        objects = InstanceData(labels=torch.randint(0, 80, (3,)), bboxes=torch.rand(3, 4))
        with UpperBoundDataDependentOps():
            result = assigner.assign(predictions, objects, img_meta=dict(img_shape=(64, 64)))
            positives = torch.nonzero(result.gt_inds > 0)
    assert positives.shape == (3, 1)  # min(10 queries, 3 objects), not the bound of 10


@needs_torch(MEMORY_SIMULATION, 'the training-memory simulation')
def test_a_label_map_on_fake_tensors_has_as_many_classes_as_its_values():
    """mmseg's Mask2Former makes a mask per class found in a label map: the simulated map keeps
    its values, so the classes are its own (3), not the bound of one a pixel."""
    from mmengine.structures import PixelData

    from mmcoatnet.analysis.fake_values import UpperBoundDataDependentOps
    from mmcoatnet.analysis.simulation import simulation_patches
    labels = PixelData(data=torch.tensor([[[0, 4, 4], [7, 0, 255]]]))
    with simulation_patches('cuda'), FakeTensorMode(allow_non_fake_inputs=True), \
            UpperBoundDataDependentOps():
        label_map = labels.to('cpu', copy=True).data
        classes = torch.unique(label_map)
        classes = classes[classes != 255]
    assert classes.shape == (3,)
