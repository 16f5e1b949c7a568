# CoAtNet-1 as timm's coatnet-1-rw architecture, initialised from the converted ImageNet weights
# coatnet_1_rw_224.sw_in1k.
# What a recipe takes for its size, beside a protocol base (../protocols/, which holds common.py):
# shared by the detection and segmentation recipes, so the widths are written once.
coatnet_channels = [96, 192, 384, 768]  # S1-S4
coatnet_s3_channels = 384  # for heads that read one stage
coatnet_decay_steps = 25  # of layer-wise lr decay, stem to heads: the stem and 24 blocks (2+6+14+2)
coatnet_pretrained = 'checkpoints/coatnet_1_rw_224.sw_in1k.pth'
coatnet_backbone = dict(
    arch='coatnet-1-rw', drop_path_rate=0.3, init_cfg=dict(checkpoint=coatnet_pretrained))
