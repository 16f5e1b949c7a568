# The body of maskrcnn_coatnet{0,1,2}_ms-3x_coco.py (the protocol: maskrcnn_coatnet0_ms-3x_coco.py):
# mmdet's Swin-T 3x config with a CoAtNet backbone; each recipe adds its architecture
# (../coatnet/coatnet-<n>-rw.py) and the widths the neck reads.
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py',
    '../coatnet/common.py',
]
custom_imports = dict(imports=['mmcoatnet'], allow_failed_imports=False)
model = dict(backbone={{_base_.coatnet_backbone_defaults}})
# CoAtNet's no-decay parameters, from the model, in place of Swin's names (absolute_pos_embed,
# ..._bias_table, norm); biases also take none, as in mmdet's ConvNeXt and mmpretrain's recipes
optim_wrapper = dict(constructor={{_base_.coatnet_optim_constructor}},
                     paramwise_cfg=dict(_delete_=True))
