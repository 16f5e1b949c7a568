# Mask R-CNN + FPN with a CoAtNet-1 backbone, COCO instance segmentation, on the 1x schedule of
# maskrcnn_coatnet0_coco.py.
_base_ = ['./_base_/protocols/maskrcnn_coco.py', './_base_/coatnet/coatnet-1-rw.py']
model = dict(
    backbone={{_base_.coatnet_backbone}},
    neck=dict(in_channels={{_base_.coatnet_channels}}))
