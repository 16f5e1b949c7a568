# CoAtNet-0 as timm's coatnet-0-rw architecture, initialised from the converted ImageNet weights
# coatnet_0_rw_224.sw_in1k.
# What a recipe takes for its size, beside a protocol base (../protocols/, which holds common.py):
# shared by the detection and segmentation recipes, so the widths are written once.
coatnet_channels = [96, 192, 384, 768]  # S1-S4
coatnet_s3_channels = 384  # for heads that read one stage
coatnet_decay_steps = 15  # of layer-wise lr decay, stem to heads: the stem and 14 blocks (2+3+7+2)
coatnet_pretrained = 'checkpoints/coatnet_0_rw_224.sw_in1k.pth'
coatnet_backbone = dict(
    arch='coatnet-0-rw', drop_path_rate=0.2, init_cfg=dict(checkpoint=coatnet_pretrained))
