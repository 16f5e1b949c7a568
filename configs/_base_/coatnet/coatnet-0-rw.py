# CoAtNet-0 as timm's coatnet-0-rw architecture, initialised from the converted ImageNet weights
# coatnet_0_rw_224.sw_in1k.
# Shared by the detection and segmentation configs, so the widths are written once.
_base_ = ['./common.py']
coatnet_channels = [96, 192, 384, 768]  # S1-S4
coatnet_s3_channels = 384  # for heads that read one stage
coatnet_pretrained = 'checkpoints/coatnet_0_rw_224.sw_in1k.pth'
coatnet_backbone = dict(
    arch='coatnet-0-rw', drop_path_rate=0.2, init_cfg=dict(checkpoint=coatnet_pretrained))
