# `make demo-transfer`, step 2: the toy Mask R-CNN fine-tuned from the toy classification
# pre-training (configs/toy/coatnet-pico_toy-cls.py, 64x64 images). The backbone keeps the
# pre-training size, so its bias tables (learned for 64x64) are resized at run time to the
# detection feature sizes. The scratch baseline is this config with model.backbone.init_cfg=None:
# the same model, schedule and data, only the start differs. Validated every epoch for the curve.
_base_ = ['../maskrcnn_coatnet-pico_toy.py']

pretrained = 'work_dirs/demo_transfer/pretrain/coatnet-pico_toy-cls.pth'
model = dict(backbone=dict(pretrain_img_size=64,
                           init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=pretrained)))

max_epochs = 6
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
         eta_min=1e-5, convert_to_iter_based=True),
]
default_hooks = dict(checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
