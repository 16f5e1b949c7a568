# Cascade Mask R-CNN + FPN with a CoAtNet-0 backbone, COCO instance segmentation, mmdet's
# ConvNeXt-T Cascade 3x protocol: 4conv1fc bbox heads with the GIoU loss, multi-scale training with
# the crop augmentation, 36 epochs, AdamW lr 2e-4, wd 0.05, steps at epochs 27 and 33, layer-wise lr
# decay, 8 GPUs x 2 images, mixed precision (--amp). Everything but the backbone is mmdet's own.
_base_ = [
    'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',
    './_base_/coatnet/coatnet-0-rw.py',
]
# mmcoatnet, not the base's mmpretrain (its ConvNeXt is replaced)
custom_imports = dict(imports=['mmcoatnet'], allow_failed_imports=False)
model = dict(
    backbone={{_base_.coatnet_backbone}},
    neck=dict(in_channels={{_base_.coatnet_channels}}))
optim_wrapper = dict(
    # the protocol's AmpOptimWrapper is what --amp sets; without it the config runs on a CPU too
    type='OptimWrapper',
    constructor='CoAtNetLayerDecayOptimizerConstructor',
    # mmdet's recipe decays by 0.7 per step over ConvNeXt-T's 7 steps from stem to heads (its 6
    # layers); CoAtNet-0-rw has 15 (14 blocks), so 0.7 ** (7 / 15) gives its stem the
    # same lr x 0.082
    paramwise_cfg=dict(_delete_=True, decay_type='layer_wise', decay_rate=0.7 ** (7 / 15)))
