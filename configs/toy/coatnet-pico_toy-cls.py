# The CPU classification demo: the ImageNet recipe (../imagenet/coatnet0_in1k-224.py) pre-training
# a small CoAtNet from scratch on the built-in toy set (tools/make_toy_data.py: circles, squares and
# triangles on textured backgrounds, 64x64, mmpretrain's CustomDataset folder layout). The paper's
# head (final_norm=None); the augmentation slimmed to flips, as 300 images per class learn faster
# without Mixup and RandAugment. 12 epochs of 29 steps: 63.9% top-1 on the toy val set (chance
# 33.3%; docs/results/transfer_toy.json); its transformer stages learn slowly from so few images
# (a convolution-only variant reached 79% in the same steps), the paper's point about data size.
_base_ = ['../imagenet/coatnet0_in1k-224.py', './_base_/toy-coatnet.py']

data_root = 'data/toy_cls'
img_size = 64
num_classes = 3

model = dict(
    backbone=dict(arch={{_base_.toy_arch}}, drop_path_rate=0.0, pretrain_img_size=img_size),
    head=dict(num_classes=num_classes, in_channels=256, topk=(1,)),  # S4 width of coatnet-pico
    train_cfg=None)  # no Mixup
data_preprocessor = dict(num_classes=num_classes)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_size),
    dict(type='RandomFlip', prob=[0.25, 0.25], direction=['horizontal', 'vertical']),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_size),
    dict(type='PackInputs'),
]
# The classes are the folder names: circle, square, triangle.
train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=True,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root, data_prefix='train',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64, num_workers=1, persistent_workers=True,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root, data_prefix='val',
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1,))
test_evaluator = val_evaluator

max_epochs = 12
warmup_epochs = 1
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-2, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, T_max=max_epochs - warmup_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=4)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=32)
randomness = dict(seed=0)
