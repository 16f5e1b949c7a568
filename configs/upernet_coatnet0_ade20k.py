# UperNet + auxiliary FCN head with a CoAtNet-0 backbone, ADE20K 512x512, 160k iterations,
# 8 GPUs x 2 images. Model, data, schedule and runtime are mmseg's own.
_base_ = [
    'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py',
    './_base_/coatnet/coatnet-0-rw.py',
]
model = dict(
    pretrained=None,
    backbone={{_base_.coatnet_backbone}},
    decode_head=dict(in_channels={{_base_.coatnet_channels}}, num_classes=150),
    auxiliary_head=dict(in_channels={{_base_.coatnet_s3_channels}}, num_classes=150))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg={{_base_.coatnet_paramwise_cfg}})
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)
