# The paper's ImageNet-1K pre-training recipe at 224 (Dai et al. 2021, arXiv 2106.04803, appendix
# A.2, Table 10, column "ImageNet-1K Pre-Training"), shared by ../coatnet<n>_in1k-224.py, which set
# the architecture, its last-stage width and its stochastic depth. Data loading, runtime and the
# form of the AdamW schedule are mmpretrain's Swin recipe; the values are the paper's, and where
# Table 10 has none the comment names the source.
# 8 GPUs x 128 images = 1024 per step; the paper's 4096 takes --auto-scale-lr on 32 GPUs.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmcoatnet', 'mmcoatnet.models.cls_head'],
                      allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='CoAtNet',
        out_indices=(3,),  # the head reads S4 only
        pretrain_img_size=224,
        norm_cfg=dict(type='BN', requires_grad=True)),  # from scratch: no init_cfg
    neck=None,
    head=dict(
        type='CoAtNetClsHead',
        num_classes=1000,
        final_norm=None,  # the paper's head: global average pooling, then the classifier
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),  # Table 10
        topk=(1, 5)),
    # Table 10: Mixup alpha 0.8, softmax loss; the table lists no CutMix, so there is none
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8)]))

# Table 10: RandAugment 2, 15 on Google's scale, whose top level is 10; timm clips m15 to that top
# (its magnitude_max), and mmpretrain's 'timm_increasing' ranges are timm's, so: level 10 of 10.
# No random erasing (not in Table 10). Crops: Inception-style at 224, bicubic (mmpretrain's Swin).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, magnitude_level=10,
         total_level=10, magnitude_std=0,
         hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),  # ImageNet mean, BGR
    dict(type='PackInputs'),
]
# Table 10: "Center crop: True" at 224: the short side to 256, then the central 224 (the base's).
train_dataloader = dict(batch_size=128, dataset=dict(pipeline=train_pipeline))

base_lr = 1e-3 * 1024 / 4096  # Table 10: peak 1e-3 at batch 4096, scaled linearly to 1024
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=base_lr, weight_decay=0.05,  # Table 10
                   betas=(0.9, 0.999), eps=1e-8),  # not in Table 10: mmpretrain's Swin values
    # No weight decay on relative-position tables, norms, biases and LayerScale: the constructor
    # asks the backbone which parameters those are (no layer-wise lr decay at its default rate).
    constructor='CoAtNetLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(_delete_=True),
    clip_grad=dict(max_norm=1.0))  # Table 10: gradient clip 1.0

max_epochs = 300  # Table 10
# Table 10: warm-up 10K steps of 4096 images = 32 epochs of ImageNet's 1.28M, at any batch size;
# then cosine decay to the minimum 1e-5, a 1/100 of the peak (a ratio, so it scales with the lr).
warmup_epochs = 32
param_scheduler = [
    # linear from 1/1000 of the peak (not in Table 10: mmpretrain's Swin value)
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-2, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, T_max=max_epochs - warmup_epochs, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
auto_scale_lr = dict(base_batch_size=1024)  # the total batch base_lr is stated for

# Checkpoints carry the RNG states, so a resumed run continues as an uninterrupted one would.
custom_hooks = [dict(type='RandomStateHook')]
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3))
