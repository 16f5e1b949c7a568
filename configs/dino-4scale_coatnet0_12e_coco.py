# DINO 4-scale with a CoAtNet-0 backbone, COCO detection, 12 epochs: the protocol, mmdet's DINO
# 4-scale 12e config (R-50's), through configs/_base_/protocols/dino-4scale_12e_coco.py.
_base_ = ['./_base_/protocols/dino-4scale_12e_coco.py', './_base_/coatnet/coatnet-0-rw.py']
model = dict(
    backbone={{_base_.coatnet_backbone}},
    neck=dict(in_channels={{_base_.coatnet_s2_to_s4_channels}}))
