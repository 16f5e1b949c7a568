# The body of upernet_coatnet{0,1,2}_ade20k.py (the protocol: upernet_coatnet0_ade20k.py): mmseg's
# ConvNeXt-T UperNet config with a CoAtNet backbone; each recipe adds its architecture
# (../coatnet/coatnet-<n>-rw.py) and the widths the heads read.
_base_ = [
    '../onedl_scopes.py',  # first: lets OneDL's fork of mmengine find mmseg:: (read it)
    'mmseg::convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py',
    '../coatnet/common.py',
]
# mmcoatnet, not the base's mmpretrain (its ConvNeXt is replaced)
custom_imports = dict(imports=['mmcoatnet'], allow_failed_imports=False)
model = dict(backbone={{_base_.coatnet_backbone_defaults}})
optim_wrapper = dict(
    # the protocol's AmpOptimWrapper (and its loss_scale) is what --amp sets; without it the
    # config also runs on a CPU
    _delete_=True,
    type='OptimWrapper',
    optimizer={{_base_.optim_wrapper.optimizer}},
    constructor={{_base_.coatnet_optim_constructor}},
    # the decay mmseg's ConvNeXt (stage-wise) and BEiT recipes use
    paramwise_cfg=dict(decay_type='stage_wise', decay_rate=0.9))
auto_scale_lr = dict(enable=False, base_batch_size=16)  # for --auto-scale-lr
