# Mask R-CNN + FPN with a CoAtNet-1 backbone, COCO instance segmentation, in the Swin-T 3x
# protocol of maskrcnn_coatnet0_ms-3x_coco.py.
_base_ = ['./_base_/protocols/maskrcnn_ms-3x_coco.py', './_base_/coatnet/coatnet-1-rw.py']
model = dict(
    backbone={{_base_.coatnet_backbone}},
    neck=dict(in_channels={{_base_.coatnet_channels}}))
