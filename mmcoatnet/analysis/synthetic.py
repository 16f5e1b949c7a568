"""One synthetic batch for a detection or segmentation config, for the tools that measure a whole
model (memory, FLOPs, compile times): the figures depend on shapes, not on image content."""
from typing import Tuple

import numpy as np
import torch

from ..utils.errors import ToolError

SCOPES = ('mmdet', 'mmseg')


def _num_classes(cfg) -> int:
    if cfg.default_scope == 'mmseg':
        return cfg.model.decode_head.num_classes
    if 'panoptic_head' in cfg.model:  # mmdet's Mask2Former counts things and stuff
        head = cfg.model.panoptic_head
        return head.num_things_classes + head.num_stuff_classes
    head = cfg.model.get('roi_head', {}).get('bbox_head', cfg.model.get('bbox_head', {}))
    head = head[0] if isinstance(head, (list, tuple)) else head  # Cascade: one head per stage
    return head.get('num_classes', 80)


def _detection_sample(cfg, meta: dict, instances: int, rng: np.random.Generator):
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    sample = DetDataSample(metainfo=meta)
    if instances:
        height, width = meta['img_shape']
        corners = rng.uniform(0, 1, (instances, 2, 2)) * [[width, height]]
        boxes = np.concatenate([corners.min(1), corners.max(1) + 8], axis=1)
        boxes = np.minimum(boxes, [width, height, width, height]).astype(np.float32)
        gt = InstanceData(bboxes=torch.from_numpy(boxes),
                          labels=torch.from_numpy(rng.integers(0, _num_classes(cfg), instances)))
        # the mask heads: Mask R-CNN's RoI head, Mask2Former's (mmdet's panoptic_head)
        if 'mask_head' in cfg.model.get('roi_head', {}) or 'panoptic_head' in cfg.model:
            masks = np.zeros((instances, height, width), dtype=np.uint8)
            for mask, (x1, y1, x2, y2) in zip(masks, boxes.astype(int)):
                mask[y1:y2, x1:x2] = 1
            gt.masks = BitmapMasks(masks, height, width)
        sample.gt_instances = gt
    return sample


def _segmentation_sample(cfg, meta: dict, classes: int, rng: np.random.Generator):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    sample = SegDataSample(metainfo=meta)
    present = np.arange(_num_classes(cfg))
    if classes:  # a scene holds some classes, not every one (mask-classification heads see that)
        present = rng.choice(present, size=min(classes, len(present)), replace=False)
    labels = rng.choice(present, (1, *meta['img_shape']))
    sample.gt_sem_seg = PixelData(data=torch.from_numpy(labels))
    return sample


def synthetic_batch(cfg, shape: Tuple[int, int], batch: int = 1, instances: int = 0,
                    seed: int = 0) -> dict:
    """``batch`` random uint8 images of ``shape`` (H, W) with their data samples, as a data loader
    gives them to the model's data preprocessor: for mmdet, ``instances`` random boxes (and masks
    where the config has a mask head, Mask2Former's included) per image; for mmseg, a random label
    map of ``instances`` classes (every class for 0)."""
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ToolError(f'this tool measures {" and ".join(SCOPES)} configs; this config\'s '
                        f'default_scope is {scope!r}')
    rng = np.random.default_rng(seed)
    height, width = shape
    meta = dict(img_shape=(height, width), ori_shape=(height, width), scale_factor=(1., 1.))
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.from_numpy(rng.integers(0, 256, (3, height, width), dtype=np.uint8)))
        samples.append(_detection_sample(cfg, meta, instances, rng) if scope == 'mmdet'
                       else _segmentation_sample(cfg, meta, instances, rng))
    return dict(inputs=inputs, data_samples=samples)
