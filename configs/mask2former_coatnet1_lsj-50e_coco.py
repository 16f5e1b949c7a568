# Mask2Former with a CoAtNet-1 backbone, COCO instance segmentation, in the LSJ 50-epoch protocol of
# mask2former_coatnet0_lsj-50e_coco.py.
_base_ = ['./_base_/protocols/mask2former_lsj-50e_coco.py', './_base_/coatnet/coatnet-1-rw.py']
model = dict(
    backbone={{_base_.coatnet_backbone}},
    panoptic_head=dict(in_channels={{_base_.coatnet_channels}}))
