"""tools/analysis_tools/get_flops.py on the toy configs: the attention products are all counted, and
the backbone's share is what the backbone alone counts."""
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
