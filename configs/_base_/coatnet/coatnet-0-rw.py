# CoAtNet-0 as timm's coatnet-0-rw architecture, initialised from the converted ImageNet weights
# coatnet_0_rw_224.sw_in1k (README, "ImageNet-pretrained weights").
# Shared by the detection and segmentation configs,
# so the widths are written once: they use coatnet_backbone and coatnet_channels.
custom_imports = dict(imports=['mmcoatnet'], allow_failed_imports=False)
coatnet_channels = [96, 192, 384, 768]  # S1-S4
coatnet_s3_channels = 384  # for heads that read one stage
coatnet_pretrained = 'checkpoints/coatnet_0_rw_224.sw_in1k.pth'
coatnet_backbone = dict(
    _delete_=True,  # replaces the base config's ResNet and its torchvision / open-mmlab weights
    type='CoAtNet',
    arch='coatnet-0-rw',
    out_indices=(0, 1, 2, 3),
    drop_path_rate=0.2,
    pretrain_img_size=224,
    norm_cfg=dict(type='BN', requires_grad=True),  # becomes SyncBN under DDP: sync_bn below
    norm_eval=False,
    frozen_stages=-1,
    with_cp=False,
    init_cfg=dict(type='Pretrained', checkpoint=coatnet_pretrained))
# BN of the convolutional stages is converted to SyncBN when training on several processes.
sync_bn = 'torch'
# Checkpoints carry the RNG states, so a resumed run continues exactly as an uninterrupted one.
custom_hooks = [dict(type='RandomStateHook')]
# No weight decay on relative-position parameters, LayerScale and norms.
coatnet_paramwise_cfg = dict(
    norm_decay_mult=0., custom_keys={'rel_pos': dict(decay_mult=0.), '.gamma': dict(decay_mult=0.)})
