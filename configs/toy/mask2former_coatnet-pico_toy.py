# The toy Mask2Former: configs/mask2former_coatnet0_ade20k.py on the built-in toy dataset in
# ADE20K's folder layout (tools/make_toy_data.py): background and three shape classes, 128x128
# crops, a small CoAtNet from scratch and a shrunk head that learns on 2 cores: the recipe's
# Mask2FormerHead and MSDeformAttnPixelDecoder, narrower, with fewer layers, queries and points.
_base_ = ['../mask2former_coatnet0_ade20k.py', './_base_/toy-coatnet.py',
          './_base_/toy-mask2former.py']

data_root = 'data/toy_ade'
crop_size = (128, 128)
num_classes = 4
metainfo = dict(classes=('background', 'circle', 'square', 'triangle'),
                palette=[(120, 120, 120), (220, 20, 60), (0, 160, 80), (30, 60, 220)])
# The toy classes are not ADE20K's 150, so the generic dataset reads the same folder layout.
dataset_settings = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
                        img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone={{_base_.toy_backbone}},
    decode_head=dict(
        in_channels={{_base_.toy_channels}},
        feat_channels={{_base_.toy_mask2former_width}},
        out_channels={{_base_.toy_mask2former_width}},
        num_classes=num_classes,
        num_queries=10,  # the recipe's 100
        pixel_decoder={{_base_.toy_mask2former_pixel_decoder}},
        positional_encoding={{_base_.toy_mask2former_positional_encoding}},
        transformer_decoder={{_base_.toy_mask2former_transformer_decoder}},
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1]),  # the no-object class last
        # the recipe's 12544 points per mask outnumber the pixels of a 128x128 crop's masks (32x32)
        train_cfg=dict(num_points=32 * 32)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=crop_size, ratio_range=(1.0, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True,
    dataset=dict(_delete_=True, **dataset_settings, pipeline=train_pipeline,
                 data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))
val_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    dataset=dict(_delete_=True, **dataset_settings, pipeline=test_pipeline,
                 data_prefix=dict(img_path='images/validation',
                                  seg_map_path='annotations/validation')))
test_dataloader = val_dataloader

max_iters = 1600
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
# From scratch: a higher lr than the recipe's fine-tuning 1e-4, the backbone at the same lr (no
# lr_mult 0.1), and the recipe's gradient clipping at 0.01 loosened.
optim_wrapper = dict(
    optimizer=dict(lr=1e-3), clip_grad=dict(max_norm=1.0),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0, decay_mult=1.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='PolyLR', eta_min=1e-5, power=1.0, begin=100, end=max_iters, by_epoch=False),
]
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=400, max_keep_ckpts=2))
auto_scale_lr = dict(base_batch_size=8)
randomness = dict(seed=0)
