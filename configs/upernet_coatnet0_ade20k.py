# UperNet + auxiliary FCN head with a CoAtNet-0 backbone, ADE20K 512x512, mmseg's ConvNeXt-T
# UperNet protocol: 160k iterations, AdamW lr 1e-4, wd 0.05, stage-wise lr decay 0.9, 1500 warm-up
# iterations then poly decay, 8 GPUs x 2 images, mixed precision (--amp), sliding-window test
# (512x512, stride 341). Evaluated single-scale and multi-scale + flip (--tta): docs/training.md.
# Everything but the backbone is mmseg's own.
_base_ = ['./_base_/protocols/upernet_ade20k.py', './_base_/coatnet/coatnet-0-rw.py']
model = dict(
    backbone={{_base_.coatnet_backbone}},
    decode_head=dict(in_channels={{_base_.coatnet_channels}}),
    auxiliary_head=dict(in_channels={{_base_.coatnet_s3_channels}}))
