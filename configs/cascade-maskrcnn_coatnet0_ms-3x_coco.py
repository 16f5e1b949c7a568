# Cascade Mask R-CNN + FPN with a CoAtNet-0 backbone, COCO instance segmentation, mmdet's
# ConvNeXt-T Cascade 3x protocol: 4conv1fc bbox heads with the GIoU loss, multi-scale training with
# the crop augmentation, 36 epochs, AdamW lr 2e-4, wd 0.05, steps at epochs 27 and 33, layer-wise lr
# decay, 8 GPUs x 2 images, mixed precision (--amp). Everything but the backbone is mmdet's own.
_base_ = ['./_base_/protocols/cascade-maskrcnn_ms-3x_coco.py', './_base_/coatnet/coatnet-0-rw.py']
model = dict(
    backbone={{_base_.coatnet_backbone}},
    neck=dict(in_channels={{_base_.coatnet_channels}}))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.7 ** (7 / _base_.coatnet_decay_steps)))
