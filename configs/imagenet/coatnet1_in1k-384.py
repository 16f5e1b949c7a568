# CoAtNet-1 fine-tuned at 384 from its 224 ImageNet-1K model (./coatnet1_in1k-224.py): the paper's
# ImageNet-1K fine-tuning (appendix A.2, Table 10, column "ImageNet-1K Finetuning"), 8 GPUs x 64 =
# 512 per step, Table 10's own batch. Paper: 85.1 top-1 at 384 (Table 4).
# Put the 224 run's last checkpoint (work_dirs/coatnet1_in1k-224/epoch_300.pth) at `pretrained`;
# the backbone's relative-bias tables are resized to 384 as they load, the classifier loads as is.
_base_ = ['./coatnet1_in1k-224.py']
pretrained = 'checkpoints/coatnet1_in1k-224.pth'
img_size = 384

model = dict(
    backbone=dict(pretrain_img_size=img_size,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    head=dict(init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='head.')))

# Same augmentation as at 224 (Table 10: RandAugment 2, 15, Mixup 0.8, label smoothing 0.1,
# stochastic depth as in pre-training), at 384.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, magnitude_level=10,
         total_level=10, magnitude_std=0,
         hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(type='PackInputs'),
]
# Table 10: "Center crop: False" for fine-tuning: the whole image resized to 384x384.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_size, backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=64, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# Table 10: AdamW at a constant 5e-5 (peak = minimum, no warm-up, no decay), weight decay 1e-8,
# gradient clip 1.0, 30 epochs, EMA of the weights with decay 0.9999 (validated and saved).
base_lr = 5e-5
optim_wrapper = dict(optimizer=dict(lr=base_lr, weight_decay=1e-8))
param_scheduler = []
max_epochs = 30
train_cfg = dict(max_epochs=max_epochs)
custom_hooks = [
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),  # momentum = 1 - decay
    dict(type='RandomStateHook'),
]
auto_scale_lr = dict(base_batch_size=512)
