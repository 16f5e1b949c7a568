# mmdet's own Mask R-CNN model with a small CoAtNet backbone; FPN channels follow the backbone.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py']
custom_imports = dict(imports=['mmcoatnet'], allow_failed_imports=False)
default_scope = 'mmdet'
widths = (16, 32, 64, 64)
model = dict(
    backbone=dict(
        _delete_=True,  # drop the ResNet-50 and its torchvision:// weights
        type='CoAtNet',
        arch=dict(stem_channels=(16, 16), depths=(1, 1, 2, 1), channels=widths),
        out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=list(widths)))
