"""tools/analysis_tools/get_flops.py on the toy configs: the attention products are all counted, and
the backbone's share is what the backbone alone counts."""
import importlib.util
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import mmcoatnet  # noqa: F401  (registers CoAtNet)
from mmcoatnet.torch_compat import MEMORY_SIMULATION

from helpers import needs_torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOY_DET = osp.join('configs', 'toy', 'maskrcnn_coatnet-pico_toy.py')
TOY_SEG = osp.join('configs', 'toy', 'upernet_coatnet-pico_toy.py')


def get_flops(tmp_path, config, *args):
    out = tmp_path / 'flops.json'
    result = subprocess.run(
        [sys.executable, 'tools/analysis_tools/get_flops.py', config, '--out', str(out), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (report,) = json.loads(out.read_text())
    return report, result.stdout


def backbone_alone(config, shape):
    """MACs and parameters of the config's backbone built on its own, counted with torch's stock
    FlopCounterMode and the math attention kernel (plain matmuls, which it has formulas for)."""
    backbone = MODELS.build(Config.fromfile(osp.join(ROOT, config)).model.backbone).eval()
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        backbone(torch.randn(1, 3, *shape))
    return counter.get_total_flops() // 2, sum(p.numel() for p in backbone.parameters())


def attention_products(shape, depths=(2, 2, 3, 2), channels=(32, 64, 128, 256)):
    """q·kᵀ and attention·v MACs of coatnet-pico's transformer stages S3, S4: per block
    2 x N² x width for N tokens (the stem and every stage halve the size, rounding up)."""
    height, width = shape
    total = 0
    for stage in range(4):
        for _ in range(2 if stage == 0 else 1):
            height, width = (height + 1) // 2, (width + 1) // 2
        if stage >= 2:
            tokens = height * width
            total += depths[stage] * 2 * tokens ** 2 * channels[stage]
    return total


@pytest.mark.slow
def test_detection_count_has_every_attention_product_and_the_backbones_share(tmp_path):
    report, stdout = get_flops(tmp_path, TOY_DET, '--shape', '100', '150', '--proposals', '200')
    assert report['task'] == 'detection' and report['shape'] == [100, 150]
    assert report['input_shape'] == [128, 160]  # padded to 32 by the data preprocessor
    backbone, attention = report['backbone'], report['attention']
    assert (backbone['macs'], backbone['params']) == backbone_alone(TOY_DET, (128, 160))
    assert backbone['share'] == pytest.approx(backbone['macs'] / report['macs'])
    # S3 and S4 run scaled_dot_product_attention: every product counted, none missed
    assert attention['modules'] == ['RelativeAttention'] and attention['count'] == 3 + 2
    assert attention['products_macs'] == attention_products((128, 160))
    assert 0 < attention['products_macs'] < attention['macs'] < backbone['macs']
    assert attention['share'] > 0 and attention['products_share'] > 0
    # the parts add up to the whole: backbone, neck, RPN head and RoI head
    parts = report['parts_gmacs']
    assert list(parts) == ['backbone', 'neck', 'rpn_head', 'roi_head']
    assert sum(parts.values()) == pytest.approx(report['gmacs'], rel=1e-9)
    assert '200 proposals' in report['forward']
    assert 'q·kᵀ, attn·v' in stdout and 'CoAtNet' in stdout
    # more proposals cost more RoI-head MACs and nothing else
    more, _ = get_flops(tmp_path, TOY_DET, '--shape', '100', '150', '--proposals', '400')
    assert more['backbone']['macs'] == backbone['macs']
    assert more['parts_gmacs']['roi_head'] > parts['roi_head']
    # --out keeps one entry per config, shape and options: the second run replaced the first
    assert len(json.loads((tmp_path / 'flops.json').read_text())) == 1


def test_segmentation_count_has_the_decode_head_and_not_the_auxiliary_head(tmp_path):
    report, _ = get_flops(tmp_path, TOY_SEG, '--shape', '96', '128')
    assert report['task'] == 'segmentation' and report['input_shape'] == [96, 128]
    assert (report['backbone']['macs'], report['backbone']['params']) == \
        backbone_alone(TOY_SEG, (96, 128))
    assert report['attention']['products_macs'] == attention_products((96, 128))
    assert list(report['parts_gmacs']) == ['backbone', 'decode_head']


def load_get_flops():
    spec = importlib.util.spec_from_file_location(
        'get_flops_tool', osp.join(ROOT, 'tools', 'analysis_tools', 'get_flops.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_torch(MEMORY_SIMULATION, "mmcv's deformable attention as one op")
def test_the_deformable_attention_counts_its_sampling_by_hand_and_computes_as_mmcv_does():
    from mmcv.ops import MultiScaleDeformableAttention
    get_flops = load_get_flops()
    torch.manual_seed(0)
    attention = MultiScaleDeformableAttention(embed_dims=32, num_heads=4, num_levels=2,
                                              num_points=3, batch_first=True).eval()
    spatial_shapes = torch.tensor([[6, 8], [3, 4]])
    level_start_index = torch.tensor([0, 48])
    query, value = torch.randn(2, 5, 32), torch.randn(2, 6 * 8 + 3 * 4, 32)
    reference_points = torch.rand(2, 5, 2, 2)

    def run(module, query, value):
        return module(query, value=value, reference_points=reference_points,
                      spatial_shapes=spatial_shapes, level_start_index=level_start_index)

    counts, missed = get_flops.count_flops(attention, run, query, value)
    assert not missed
    by_op = {str(op): flops for op, flops in counts[''].items()}
    # by hand: 2 images x 5 queries x 4 heads x 2 levels x 3 points, each bilinear sampling of
    # 32 / 4 = 8 channels (4 MACs a channel) and its weighted sum (1 MAC a channel)
    assert by_op[get_flops.DEFORMABLE_ATTENTION_OP] == 2 * (2 * 5 * 4 * 2 * 3 * 8 * (4 + 1))
    # the four projections are matrix products, counted as such
    projections = 2 * 5 * 32 * (4 * 2 * 3 * 2 + 4 * 2 * 3) + 2 * 60 * 32 * 32 + 2 * 5 * 32 * 32
    assert by_op['aten.addmm'] == 2 * projections
    # as one op it computes what mmcv's fallback computes
    from mmcoatnet.analysis.deformable_attention import deformable_attention_as_one_op
    with torch.no_grad(), deformable_attention_as_one_op():
        through_the_op = run(attention, query, value)
    with torch.no_grad():
        assert torch.equal(through_the_op, run(attention, query, value))


def test_the_gpu_hours_count_a_training_image_at_its_training_input():
    get_flops = load_get_flops()

    def shape(config):
        return get_flops.training_shape(Config.fromfile(osp.join(ROOT, 'configs', config)))

    assert shape('mask2former_coatnet0_lsj-50e_coco.py') == (1024, 1024)  # every batch padded to
    assert shape('dino-4scale_coatnet0_12e_coco.py') == (800, 1280)  # the multi-scale bound
    assert shape('mask2former_coatnet0_ade20k.py') == (512, 512)  # the crop
