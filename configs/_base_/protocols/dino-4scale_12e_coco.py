# The body of dino-4scale_coatnet{0,1,2}_12e_coco.py (the protocol:
# dino-4scale_coatnet0_12e_coco.py): mmdet's DINO 4-scale 12-epoch config, the protocol of DINO's
# published R-50 result, with a CoAtNet backbone; each recipe adds its architecture
# (../coatnet/coatnet-<n>-rw.py) and the widths the neck reads.
_base_ = [
    'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
    '../coatnet/common.py',
]
custom_imports = dict(imports=['mmcoatnet'], allow_failed_imports=False)
# Four scales, S2-S4 and the neck's stride-64 level, as R-50's C3-C5 in the protocol. Five would add
# S1's stride-4 map: four times S2's tokens in every encoder layer (at 800x1333, 67k of 89k), the
# cost mmdet's only 5-scale protocol pays for Swin-L, whose published anchor is 5-scale.
model = dict(backbone={{_base_.coatnet_s2_to_s4_backbone_defaults}})
# The optimizer is the protocol's as it is: AdamW, lr 1e-4, weight decay 1e-4 on every parameter,
# the backbone at lr x 0.1 (custom_keys), gradients clipped at 0.1. The protocol has no layer-wise
# decay (docs/recipes.md#layer-wise-decay-per-recipe says how to add it).
