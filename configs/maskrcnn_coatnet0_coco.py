# Mask R-CNN + FPN with a CoAtNet-0 backbone, COCO instance segmentation, 1x schedule
# (12 epochs), 8 GPUs x 2 images. Model, data, schedule and runtime are mmdet's own.
_base_ = ['./_base_/protocols/maskrcnn_coco.py', './_base_/coatnet/coatnet-0-rw.py']
model = dict(
    backbone={{_base_.coatnet_backbone}},
    neck=dict(in_channels={{_base_.coatnet_channels}}))
