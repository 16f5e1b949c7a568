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
