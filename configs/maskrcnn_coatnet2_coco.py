# Mask R-CNN + FPN with a CoAtNet-2 backbone, COCO instance segmentation, 1x schedule
# (12 epochs), 8 GPUs x 2 images. Model, data, schedule and runtime are mmdet's own.
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    './_base_/coatnet/coatnet-2-rw.py',
]
custom_imports = dict(imports=['mmcoatnet'], allow_failed_imports=False)
model = dict(
    backbone={{_base_.coatnet_backbone}},
    neck=dict(in_channels={{_base_.coatnet_channels}}))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg={{_base_.coatnet_paramwise_cfg}})
auto_scale_lr = dict(enable=False, base_batch_size=16)
