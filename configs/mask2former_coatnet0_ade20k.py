# Mask2Former with a CoAtNet-0 backbone, ADE20K semantic segmentation 512x512, 160k iterations:
# the protocol, mmseg's Swin-T Mask2Former config, through
# configs/_base_/protocols/mask2former_ade20k.py.
_base_ = ['./_base_/protocols/mask2former_ade20k.py', './_base_/coatnet/coatnet-0-rw.py']
model = dict(
    backbone={{_base_.coatnet_backbone}},
    decode_head=dict(in_channels={{_base_.coatnet_channels}}))
