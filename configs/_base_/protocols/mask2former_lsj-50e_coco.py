# The body of mask2former_coatnet{0,1}_lsj-50e_coco.py (the protocol:
# mask2former_coatnet0_lsj-50e_coco.py): mmdet's Swin-T Mask2Former instance segmentation config,
# COCO with large-scale jitter at 1024x1024, 50 epochs (368,750 iterations of 16 images), with a
# CoAtNet backbone; each recipe adds its architecture (../coatnet/coatnet-<n>-rw.py) and the widths
# the head reads.
_base_ = [
    'mmdet::mask2former/mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco.py',
    '../coatnet/common.py',
]
custom_imports = dict(imports=['mmcoatnet'], allow_failed_imports=False)
model = dict(backbone={{_base_.coatnet_backbone_defaults}})
optim_wrapper = dict(
    constructor={{_base_.coatnet_optim_constructor}},
    # the protocol's norm_decay_mult=0 and Swin's no-decay names become CoAtNet's no-decay rule
    # (norms, biases, LayerScale, relative-position parameters); no layer-wise decay, as published
    paramwise_cfg=dict(_delete_=True, custom_keys={{_base_.coatnet_mask2former_custom_keys}}))
