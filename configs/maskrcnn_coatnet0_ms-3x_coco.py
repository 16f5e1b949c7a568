# Mask R-CNN + FPN with a CoAtNet-0 backbone, COCO instance segmentation, mmdet's Swin-T 3x
# protocol: multi-scale training with the crop augmentation (DETR's), 36 epochs, AdamW lr 1e-4,
# wd 0.05, steps at epochs 27 and 33, 8 GPUs x 2 images. Everything but the backbone is mmdet's own.
_base_ = ['./_base_/protocols/maskrcnn_ms-3x_coco.py', './_base_/coatnet/coatnet-0-rw.py']
model = dict(
    backbone={{_base_.coatnet_backbone}},
    neck=dict(in_channels={{_base_.coatnet_channels}}))
