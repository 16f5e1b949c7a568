# DINO 4-scale with a CoAtNet-2 backbone, COCO detection, in the 12-epoch protocol of
# dino-4scale_coatnet0_12e_coco.py.
_base_ = ['./_base_/protocols/dino-4scale_12e_coco.py', './_base_/coatnet/coatnet-2-rw.py']
model = dict(
    backbone={{_base_.coatnet_backbone}},
    neck=dict(in_channels={{_base_.coatnet_s2_to_s4_channels}}))
