# CoAtNet-2 as timm's coatnet-2-rw architecture, initialised from the converted ImageNet weights
# coatnet_2_rw_224.sw_in12k_ft_in1k.
# Shared by the detection and segmentation configs, so the widths are written once.
_base_ = ['./common.py']
coatnet_channels = [128, 256, 512, 1024]  # S1-S4
coatnet_s3_channels = 512  # for heads that read one stage
coatnet_pretrained = 'checkpoints/coatnet_2_rw_224.sw_in12k_ft_in1k.pth'
coatnet_backbone = dict(
    arch='coatnet-2-rw', drop_path_rate=0.4, init_cfg=dict(checkpoint=coatnet_pretrained))
