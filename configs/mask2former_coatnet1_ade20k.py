# Mask2Former with a CoAtNet-1 backbone, ADE20K 512x512, in the 160k protocol of
# mask2former_coatnet0_ade20k.py.
_base_ = ['./_base_/protocols/mask2former_ade20k.py', './_base_/coatnet/coatnet-1-rw.py']
model = dict(
    backbone={{_base_.coatnet_backbone}},
    decode_head=dict(in_channels={{_base_.coatnet_channels}}))
