# UperNet + auxiliary FCN head with a CoAtNet-1 backbone, ADE20K 512x512, in the ConvNeXt-T UperNet
# protocol of upernet_coatnet0_ade20k.py.
_base_ = ['./_base_/protocols/upernet_ade20k.py', './_base_/coatnet/coatnet-1-rw.py']
model = dict(
    backbone={{_base_.coatnet_backbone}},
    decode_head=dict(in_channels={{_base_.coatnet_channels}}),
    auxiliary_head=dict(in_channels={{_base_.coatnet_s3_channels}}))
