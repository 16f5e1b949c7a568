# Cascade Mask R-CNN + FPN with a CoAtNet-2 backbone, COCO instance segmentation, in the ConvNeXt-T
# Cascade 3x protocol of cascade-maskrcnn_coatnet0_ms-3x_coco.py.
_base_ = ['./_base_/protocols/cascade-maskrcnn_ms-3x_coco.py', './_base_/coatnet/coatnet-2-rw.py']
model = dict(
    backbone={{_base_.coatnet_backbone}},
    neck=dict(in_channels={{_base_.coatnet_channels}}))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.7 ** (7 / _base_.coatnet_decay_steps)))
