# Evaluation of timm's ImageNet weights for its `_rw_` CoAtNets, converted with their classifier
# (python tools/model_converters/timm2mmcoatnet.py SRC DST --keep-head), on ImageNet val:
#     python tools/test.py CONFIG CHECKPOINT   (or mmpretrain's tools/test.py)
# Shared by ../coatnet<n>-rw_timm_in1k-224.py, which set the architecture, its width and the
# checkpoint. The evaluation transform is timm's for these models (their pretrained_cfg:
# input 224, crop_pct 0.95, bicubic, mean and std 0.5), and so is the head: timm's rw models
# LayerNorm the last map over channels before pooling (coatnet-bn-0-rw would take final_norm='BN').
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmcoatnet', 'mmcoatnet.models.cls_head'],
                      allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='CoAtNet', out_indices=(3,), pretrain_img_size=224),
    neck=None,
    head=dict(type='CoAtNetClsHead', num_classes=1000, final_norm='LN', norm_eps=1e-6,
              topk=(1, 5)))

data_preprocessor = dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5])
# timm: the short side to floor(224 / 0.95) = 235 (PIL bicubic), then the central 224x224.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=235, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_cfg = dict()
test_cfg = dict()
train_dataloader = None  # evaluation only: no schedule, so no training part
