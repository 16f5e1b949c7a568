# mmseg's own UperNet model with a small CoAtNet backbone; single-process CPU norms.
_base_ = ['mmseg::_base_/models/upernet_r50.py']
custom_imports = dict(imports=['mmcoatnet'], allow_failed_imports=False)
default_scope = 'mmseg'
widths = (16, 32, 64, 64)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=(64, 64)),
    backbone=dict(
        _delete_=True,
        type='CoAtNet',
        arch=dict(stem_channels=(16, 16), depths=(1, 1, 2, 1), channels=widths),
        out_indices=(0, 1, 2, 3)),
    decode_head=dict(in_channels=list(widths), channels=32, num_classes=4, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=widths[2], channels=16, num_classes=4, norm_cfg=norm_cfg))
