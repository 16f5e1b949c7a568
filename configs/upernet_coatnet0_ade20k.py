# UperNet + auxiliary FCN head with a CoAtNet-0 backbone, ADE20K 512x512, mmseg's ConvNeXt-T
# UperNet protocol: 160k iterations, AdamW lr 1e-4, wd 0.05, stage-wise lr decay 0.9, 1500 warm-up
# iterations then poly decay, 8 GPUs x 2 images, mixed precision (--amp), sliding-window test
# (512x512, stride 341). Evaluated single-scale and multi-scale + flip (--tta): README.
# Everything but the backbone is mmseg's own.
_base_ = [
    'mmseg::convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py',
    './_base_/coatnet/coatnet-0-rw.py',
]
# mmcoatnet, not the base's mmpretrain (its ConvNeXt is replaced)
custom_imports = dict(imports=['mmcoatnet'], allow_failed_imports=False)
model = dict(
    backbone={{_base_.coatnet_backbone}},
    decode_head=dict(in_channels={{_base_.coatnet_channels}}),
    auxiliary_head=dict(in_channels={{_base_.coatnet_s3_channels}}))
optim_wrapper = dict(
    # the protocol's AmpOptimWrapper (and its loss_scale) is what --amp sets; without it the
    # config also runs on a CPU
    _delete_=True,
    type='OptimWrapper',
    optimizer={{_base_.optim_wrapper.optimizer}},
    constructor='CoAtNetLayerDecayOptimizerConstructor',
    # the decay mmseg's ConvNeXt (stage-wise) and BEiT recipes use
    paramwise_cfg=dict(decay_type='stage_wise', decay_rate=0.9))
auto_scale_lr = dict(enable=False, base_batch_size=16)  # for --auto-scale-lr
