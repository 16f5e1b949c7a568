# The body of cascade-maskrcnn_coatnet{0,1,2}_ms-3x_coco.py (the protocol:
# cascade-maskrcnn_coatnet0_ms-3x_coco.py): mmdet's ConvNeXt-T Cascade 3x config with a CoAtNet
# backbone; each recipe adds its architecture (../coatnet/coatnet-<n>-rw.py), the widths the neck
# reads and the layer-wise decay rate for its depth.
_base_ = [
    'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',
    '../coatnet/common.py',
]
# mmcoatnet, not the base's mmpretrain (its ConvNeXt is replaced)
custom_imports = dict(imports=['mmcoatnet'], allow_failed_imports=False)
model = dict(backbone={{_base_.coatnet_backbone_defaults}})
optim_wrapper = dict(
    # the protocol's AmpOptimWrapper is what --amp sets; without it the config runs on a CPU too
    type='OptimWrapper',
    constructor={{_base_.coatnet_optim_constructor}},
    # mmdet's recipe decays by 0.7 per step over ConvNeXt-T's 7 steps from stem to heads (its 6
    # layers); a recipe sets decay_rate=0.7 ** (7 / coatnet_decay_steps), which gives its stem the
    # same lr x 0.082
    paramwise_cfg=dict(_delete_=True, decay_type='layer_wise'))
