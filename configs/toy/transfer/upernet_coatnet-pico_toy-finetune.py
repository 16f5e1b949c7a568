# `make demo-transfer`, step 2: the toy UperNet fine-tuned from the toy classification
# pre-training (configs/toy/coatnet-pico_toy-cls.py, 64x64 images); bias tables resized at run
# time to the segmentation feature sizes. The scratch baseline is this config with
# model.backbone.init_cfg=None; both keep the toy config's optimizer without layer-wise lr decay,
# which would slow the scratch backbone only. Validated every 100 iterations for the curve.
_base_ = ['../upernet_coatnet-pico_toy.py']

pretrained = 'work_dirs/demo_transfer/pretrain/coatnet-pico_toy-cls.pth'
model = dict(backbone=dict(pretrain_img_size=64,
                           init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=pretrained)))

max_iters = 600
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=100)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='PolyLR', eta_min=1e-5, power=1.0, begin=100, end=max_iters, by_epoch=False),
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
