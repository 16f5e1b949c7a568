# Mask R-CNN + FPN with a CoAtNet-2 backbone, COCO instance segmentation, mmdet's Swin-T 3x
# protocol: multi-scale training with the crop augmentation (DETR's), 36 epochs, AdamW lr 1e-4,
# wd 0.05, steps at epochs 27 and 33, 8 GPUs x 2 images. Everything but the backbone is mmdet's own.
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py',
    './_base_/coatnet/coatnet-2-rw.py',
]
custom_imports = dict(imports=['mmcoatnet'], allow_failed_imports=False)
model = dict(
    backbone={{_base_.coatnet_backbone}},
    neck=dict(in_channels={{_base_.coatnet_channels}}))
# CoAtNet's no-decay parameters in place of Swin's names (absolute_pos_embed, ..._bias_table, norm)
optim_wrapper = dict(paramwise_cfg=dict(
    _delete_=True,
    norm_decay_mult={{_base_.coatnet_paramwise_cfg.norm_decay_mult}},
    custom_keys={{_base_.coatnet_paramwise_cfg.custom_keys}}))
