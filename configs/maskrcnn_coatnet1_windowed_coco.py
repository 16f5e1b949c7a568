# Mask R-CNN + FPN with CoAtNet-1, S3 attention in 14x14 windows (the 224 pre-training size, so the
# pretrained tables apply unresized) with every third S3 block global (ViTDet's recipe); S4 global.
# For the highest resolutions, where global S3 attention costs most.
_base_ = ['./maskrcnn_coatnet1_coco.py']
model = dict(backbone=dict(window_attention=dict(window_size=14)))
