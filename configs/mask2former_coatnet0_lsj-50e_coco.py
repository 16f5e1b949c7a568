# Mask2Former with a CoAtNet-0 backbone, COCO instance segmentation, large-scale jitter at
# 1024x1024, 50 epochs: the protocol, mmdet's Swin-T Mask2Former instance config, through
# configs/_base_/protocols/mask2former_lsj-50e_coco.py.
_base_ = ['./_base_/protocols/mask2former_lsj-50e_coco.py', './_base_/coatnet/coatnet-0-rw.py']
model = dict(
    backbone={{_base_.coatnet_backbone}},
    panoptic_head=dict(in_channels={{_base_.coatnet_channels}}))
