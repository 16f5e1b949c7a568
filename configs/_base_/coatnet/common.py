# What every CoAtNet recipe shares, a base of each protocol base (../protocols/); the recipe's
# coatnet-<n>-rw.py fills in the architecture, its widths and its converted ImageNet checkpoint
# (docs/pretrained-weights.md).
# No custom_imports here: each protocol base sets it, since the library base it sits beside may set
# its own (mmdet's and mmseg's ConvNeXt configs import mmpretrain) and bases may not share a key.
coatnet_backbone_defaults = dict(
    _delete_=True,  # replaces the base config's ResNet and its torchvision / open-mmlab weights
    type='CoAtNet',
    out_indices=(0, 1, 2, 3),
    pretrain_img_size=224,
    norm_cfg=dict(type='BN', requires_grad=True),  # becomes SyncBN under DDP: sync_bn below
    norm_eval=False,
    frozen_stages=-1,
    with_cp=False,
    init_cfg=dict(type='Pretrained'))
# BN of the convolutional stages is converted to SyncBN when training on several processes.
sync_bn = 'torch'
# Checkpoints carry the RNG states, so a resumed run continues exactly as an uninterrupted one.
custom_hooks = [dict(type='RandomStateHook')]
# The optimizer-wrapper constructor of every recipe: it asks the backbone for each parameter's
# depth (layer-wise lr decay, off at the default decay_rate=1) and for the parameters that take no
# weight decay (relative-position tables and MLPs; biases, norms and LayerScale by shape).
coatnet_optim_constructor = 'CoAtNetLayerDecayOptimizerConstructor'
# The backbone of the 4-scale DINO recipes: S2-S4 (strides 8, 16, 32), as R-50's C3-C5 in the
# protocol; the neck adds the fourth, stride-64 level.
coatnet_s2_to_s4_backbone_defaults = dict(coatnet_backbone_defaults, out_indices=(1, 2, 3))
# The Mask2Former protocols' custom_keys without Swin's names (its norms, relative-position tables
# and absolute_pos_embed, which the constructor takes from the CoAtNet model instead): the backbone
# at lr x 0.1, and no weight decay on the head's query and level embeddings.
coatnet_mask2former_custom_keys = {
    'backbone': dict(lr_mult=0.1, decay_mult=1.0),
    'query_embed': dict(lr_mult=1.0, decay_mult=0.0),
    'query_feat': dict(lr_mult=1.0, decay_mult=0.0),
    'level_embed': dict(lr_mult=1.0, decay_mult=0.0),
}
