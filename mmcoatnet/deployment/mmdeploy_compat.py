"""The whole detector (image to boxes, labels and masks) through mmdeploy 1.3.1 and its ONNX Runtime
backend, on this project's torch 2.13.

mmdeploy 1.3.1 pins protobuf<=3.20.2, which onnx 1.23 (protobuf>=4.25) excludes, so it lives in a
directory of its own (``mmdeploy_site()``, filled by tools/install.sh with ``pip --target
--no-deps``), which tools put on sys.path. Two things of mmdeploy 1.3.1 no longer fit torch 2.13,
and :func:`mmdeploy_on_this_torch` covers both while an export runs:

- mmdeploy/apis/onnx/export.py, ``export``: calls ``torch.onnx.export`` without ``dynamo``, which
  torch 2.13 defaults to True (the torch.export-based exporter, which needs onnxscript and ignores
  mmdeploy's TorchScript symbolics and rewriters): run with ``dynamo=False``.
- mmdeploy/mmcv/ops/roi_align.py, ``roi_align_default`` (the ONNX symbolic of mmcv's RoIAlign):
  imports ``_cast_Long`` from ``torch.onnx.symbolic_opset9``, which torch removed: ImportError.
  A stand-in emits the ONNX Cast to int64 it did.

The ONNX graph then computes what mmdeploy's rewritten model computes in PyTorch; that differs from
mmdet's own inference in one place, the RPN's NMS: mmdeploy's ``rpn_head__predict_by_feat``
(mmdeploy/codebase/mmdet/models/dense_heads/rpn_head.py) runs one NMS over the proposals of all
FPN levels, where mmdet's ``RPNHead._bbox_post_process`` runs it per level (``batched_nms`` by
level id). :func:`rpn_nms_across_levels` makes mmdet's do the same, to compare like with like.
"""
import contextlib
import functools
import os
import os.path as osp
import sys
from typing import Dict, Optional

import torch

from .onnx_export import torchscript_exporter

MMDEPLOY_VERSION = '1.3.1'
ONNX_INT64 = 7  # onnx.TensorProto.INT64


def mmdeploy_site() -> str:
    """Where mmdeploy is installed: $MMCOATNET_MMDEPLOY_SITE, else <venv>/mmdeploy-site."""
    return os.environ.get('MMCOATNET_MMDEPLOY_SITE', osp.join(sys.prefix, 'mmdeploy-site'))


def import_mmdeploy():
    """mmdeploy, from wherever it is importable: tools put :func:`mmdeploy_site` on sys.path."""
    site = mmdeploy_site()
    try:
        import mmdeploy
    except ImportError as error:
        raise RuntimeError(
            f'mmdeploy {MMDEPLOY_VERSION} is not importable ({error}); install it with '
            f'tools/install.sh, or: python -m pip install --target {site} --no-deps '
            f'-c requirements-lock.txt mmdeploy=={MMDEPLOY_VERSION} aenum multiprocess dill, and '
            f'put {site} on PYTHONPATH') from error
    if mmdeploy.__version__ != MMDEPLOY_VERSION:
        raise RuntimeError(f'mmdeploy {mmdeploy.__version__} is installed; these workarounds are '
                           f'for {MMDEPLOY_VERSION}')
    return mmdeploy


def _cast_long(g, value, non_blocking):
    return g.op('Cast', value, to_i=ONNX_INT64)


@contextlib.contextmanager
def mmdeploy_on_this_torch():
    """torch.onnx.export with ``dynamo=False`` and ``symbolic_opset9._cast_Long`` back, for the
    duration of an mmdeploy export (see the module doc); both as they were afterwards."""
    import torch.onnx.symbolic_opset9 as opset9
    export = torch.onnx.export
    had_cast_long = hasattr(opset9, '_cast_Long')
    torch.onnx.export = functools.partial(export, **torchscript_exporter())
    if not had_cast_long:
        opset9._cast_Long = _cast_long
    try:
        yield
    finally:
        torch.onnx.export = export
        if not had_cast_long:
            del opset9._cast_Long


def export_detector(model_cfg, deploy_cfg: str, work_dir: str, image,
                    checkpoint: Optional[str] = None, save_file: str = 'end2end.onnx') -> str:
    """mmdeploy's ``torch2onnx`` of the detector of ``model_cfg`` (an mmengine Config), traced on
    ``image`` (an HxWx3 uint8 array or a path) through the config's test pipeline; returns the
    ONNX file's path. Random weights without ``checkpoint``."""
    import_mmdeploy()
    from mmdeploy.apis import torch2onnx
    with mmdeploy_on_this_torch():
        torch2onnx(image, work_dir, save_file, deploy_cfg, model_cfg, checkpoint, device='cpu')
    return osp.join(work_dir, save_file)


def backend_and_pytorch_detectors(model_cfg, deploy_cfg: str, onnx_file: str,
                                  checkpoint: Optional[str] = None):
    """(mmdeploy task processor, its ONNX Runtime model, the PyTorch detector): the two models take
    the same inputs (``task_processor.create_input``) and give mmdet's DetDataSamples."""
    import_mmdeploy()
    from mmdeploy.apis.utils import build_task_processor
    from mmdeploy.utils import load_config
    deploy_cfg, model_cfg = load_config(deploy_cfg, model_cfg)
    processor = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    return (processor, processor.build_backend_model([onnx_file]),
            processor.build_pytorch_model(checkpoint).eval())


@contextlib.contextmanager
def rpn_nms_across_levels():
    """mmdet's RPN suppresses proposals across FPN levels, as mmdeploy's graph does (module doc)."""
    import mmdet.models.dense_heads.rpn_head as rpn_head
    per_level = rpn_head.batched_nms

    def across_levels(boxes, scores, level_ids, nms_cfg, **kwargs):
        return per_level(boxes, scores, torch.zeros_like(level_ids), nms_cfg, **kwargs)

    rpn_head.batched_nms = across_levels
    try:
        yield
    finally:
        rpn_head.batched_nms = per_level


def compare_detections(expected, got) -> Dict[str, object]:
    """Matches each PyTorch detection (``expected``: mmdet InstanceData) to the backend's detection
    of the same label with the highest box IoU; reports counts, the worst IoU, the largest score
    difference and the largest fraction of differing mask pixels among matched pairs."""
    from mmdet.structures.bbox import bbox_overlaps
    result = dict(pytorch_detections=len(expected), backend_detections=len(got), unmatched=0,
                  min_box_iou=1.0, max_score_diff=0.0, max_mask_pixel_diff=0.0)
    if len(expected) == 0 or len(got) == 0:
        result['unmatched'] = len(expected)
        return result
    iou = bbox_overlaps(expected.bboxes, got.bboxes)
    iou[expected.labels[:, None] != got.labels[None, :]] = -1
    best_iou, best = iou.max(dim=1)
    matched = best_iou > 0
    result['unmatched'] = int((~matched).sum())
    if matched.any():
        result['min_box_iou'] = float(best_iou[matched].min())
        result['max_score_diff'] = float(
            (expected.scores[matched] - got.scores[best[matched]]).abs().max())
        if 'masks' in expected and 'masks' in got:
            differing = expected.masks[matched] != got.masks[best[matched]].to(expected.masks.dtype)
            result['max_mask_pixel_diff'] = float(differing.flatten(1).float().mean(1).max())
    return result
