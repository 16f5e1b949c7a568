# The toy Mask2Former for instances: configs/mask2former_coatnet0_lsj-50e_coco.py on the built-in
# toy dataset (tools/make_toy_data.py): three shape classes, large-scale jitter at 128x128, a small
# CoAtNet from scratch and a shrunk head that learns on 2 cores: the recipe's Mask2Former,
# Mask2FormerHead, MSDeformAttnPixelDecoder and MaskFormerFusionHead, narrower, with fewer layers,
# queries and points; trained by epochs, as the other toy detectors.
_base_ = ['../mask2former_coatnet0_lsj-50e_coco.py', './_base_/toy-coatnet.py',
          './_base_/toy-mask2former.py']

data_root = 'data/toy_coco/'
metainfo = dict(classes=('circle', 'square', 'triangle'),
                palette=[(220, 20, 60), (0, 160, 80), (30, 60, 220)])
image_size = (128, 128)
num_classes = 3
num_queries = 20  # the recipe's 100: a toy image holds 1-4 shapes

model = dict(
    data_preprocessor=dict(batch_augments=[
        dict(type='BatchFixedSizePad', size=image_size, img_pad_value=0, pad_mask=True,
             mask_pad_value=0, pad_seg=False)]),
    backbone={{_base_.toy_backbone}},
    panoptic_head=dict(
        in_channels={{_base_.toy_channels}},
        feat_channels={{_base_.toy_mask2former_width}},
        out_channels={{_base_.toy_mask2former_width}},
        num_things_classes=num_classes,
        num_queries=num_queries,
        pixel_decoder={{_base_.toy_mask2former_pixel_decoder}},
        positional_encoding={{_base_.toy_mask2former_positional_encoding}},
        transformer_decoder={{_base_.toy_mask2former_transformer_decoder}},
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1])),  # the no-object class last
    panoptic_fusion_head=dict(num_things_classes=num_classes),
    # the recipe's 12544 points per mask outnumber the pixels of a 128x128 image's masks (32x32)
    train_cfg=dict(num_points=32 * 32),
    test_cfg=dict(max_per_image=num_queries))  # at most num_queries x num_classes scores

train_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    # the recipe's jitter (0.1-2.0) would shrink a toy shape to a few pixels
    dict(type='RandomResize', scale=image_size, ratio_range=(0.8, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=image_size, crop_type='absolute', recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-5, 1e-5), by_mask=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train.json',
                 data_prefix=dict(_delete_=True, img='train/'),  # the panoptic base's seg: unread
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_val.json',
                 data_prefix=dict(_delete_=True, img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

max_epochs = 12
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=max_epochs)
# From scratch: a higher lr than the recipe's fine-tuning 1e-4, the backbone at the same lr (no
# lr_mult 0.1), and the recipe's gradient clipping at 0.01 loosened.
optim_wrapper = dict(
    optimizer=dict(lr=1e-3), clip_grad=dict(max_norm=1.0),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0, decay_mult=1.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
         eta_min=1e-5, convert_to_iter_based=True),
]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=True, interval=max_epochs, max_keep_ckpts=1, save_last=True))
log_processor = dict(by_epoch=True)
auto_scale_lr = dict(base_batch_size=4)
randomness = dict(seed=0)
