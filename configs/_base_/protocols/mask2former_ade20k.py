# The body of mask2former_coatnet{0,1,2}_ade20k.py (the protocol: mask2former_coatnet0_ade20k.py):
# mmseg's Swin-T Mask2Former config, ADE20K 512x512 160k, with a CoAtNet backbone; each recipe adds
# its architecture (../coatnet/coatnet-<n>-rw.py) and the widths the head reads.
_base_ = [
    '../onedl_scopes.py',  # first: lets OneDL's fork of mmengine find mmseg:: (read it)
    'mmseg::mask2former/mask2former_swin-t_8xb2-160k_ade20k-512x512.py',
    '../coatnet/common.py',
]
# mmcoatnet, and mmdet.models as in the protocol (its pixel decoder is mmdet's)
custom_imports = dict(imports=['mmcoatnet', 'mmdet.models'], allow_failed_imports=False)
model = dict(backbone={{_base_.coatnet_backbone_defaults}})
optim_wrapper = dict(
    constructor={{_base_.coatnet_optim_constructor}},
    # the protocol's norm_decay_mult=0 and Swin's no-decay names become CoAtNet's no-decay rule
    # (norms, biases, LayerScale, relative-position parameters); no layer-wise decay, as published
    paramwise_cfg=dict(_delete_=True, custom_keys={{_base_.coatnet_mask2former_custom_keys}}))
