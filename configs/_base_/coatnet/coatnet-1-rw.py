# CoAtNet-1 as timm's coatnet-1-rw architecture, initialised from the converted ImageNet weights
# coatnet_1_rw_224.sw_in1k.
# Shared by the detection and segmentation configs, so the widths are written once.
_base_ = ['./common.py']
coatnet_channels = [96, 192, 384, 768]  # S1-S4
coatnet_s3_channels = 384  # for heads that read one stage
coatnet_pretrained = 'checkpoints/coatnet_1_rw_224.sw_in1k.pth'
coatnet_backbone = dict(
    arch='coatnet-1-rw', drop_path_rate=0.3, init_cfg=dict(checkpoint=coatnet_pretrained))
