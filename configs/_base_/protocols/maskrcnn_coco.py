# The body of maskrcnn_coatnet{0,1,2}_coco.py (the schedule: maskrcnn_coatnet0_coco.py): mmdet's
# Mask R-CNN 1x config with a CoAtNet backbone and AdamW; each recipe adds its architecture
# (../coatnet/coatnet-<n>-rw.py) and the widths the neck reads.
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    '../coatnet/common.py',
]
custom_imports = dict(imports=['mmcoatnet'], allow_failed_imports=False)
model = dict(backbone={{_base_.coatnet_backbone_defaults}})
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor={{_base_.coatnet_optim_constructor}})
auto_scale_lr = dict(enable=False, base_batch_size=16)
