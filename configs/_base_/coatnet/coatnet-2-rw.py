# CoAtNet-2 as timm's coatnet-2-rw architecture, initialised from the converted ImageNet weights
# coatnet_2_rw_224.sw_in12k_ft_in1k.
# What a recipe takes for its size, beside a protocol base (../protocols/, which holds common.py):
# shared by the detection and segmentation recipes, so the widths are written once.
coatnet_channels = [128, 256, 512, 1024]  # S1-S4
coatnet_s3_channels = 512  # for heads that read one stage
coatnet_decay_steps = 25  # of layer-wise lr decay, stem to heads: the stem and 24 blocks (2+6+14+2)
coatnet_pretrained = 'checkpoints/coatnet_2_rw_224.sw_in12k_ft_in1k.pth'
coatnet_backbone = dict(
    arch='coatnet-2-rw', drop_path_rate=0.4, init_cfg=dict(checkpoint=coatnet_pretrained))
