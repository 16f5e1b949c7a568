"""The backbone inside real mmdet and mmseg models, built from config files through the
registries."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.structures import PixelData

DATA = osp.join(osp.dirname(__file__), 'data')
BACKBONE = dict(type='CoAtNet', arch='coatnet-0', out_indices=(1, 2))


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_backbone_builds_through_each_library_registry(scope):
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    import mmcoatnet  # noqa: F401
    with DefaultScope.overwrite_default_scope(scope):
        init_default_scope(scope)
        backbone = MODELS.build(BACKBONE)
    assert type(backbone).__name__ == 'CoAtNet' and backbone.out_channels == [192, 384]


def build_from_config(name, scope):
    cfg = Config.fromfile(osp.join(DATA, name))
    assert cfg.model.backbone.type == 'CoAtNet' and 'init_cfg' not in cfg.model.backbone
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    import mmcoatnet  # noqa: F401  (what custom_imports does in the tools)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def train_step(model, data):
    optim_wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-4))
    before = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
    model.train()
    losses = model.train_step(data, optim_wrapper)
    assert losses and all(torch.isfinite(v).all() for v in losses.values()), losses
    changed = [n for n, p in model.backbone.named_parameters() if not torch.equal(before[n], p)]
    assert any('rel_pos.table' in n for n in changed)
    assert any(n.startswith('stem.') for n in changed)
    return losses


def test_mask_rcnn_with_coatnet_trains_one_step():
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(0)
    model = build_from_config('mask_rcnn_coatnet_small.py', 'mmdet')
    assert type(model).__name__ == 'MaskRCNN'
    data = demo_mm_inputs(batch_size=2, image_shapes=[(3, 96, 128), (3, 128, 96)], num_items=[3, 2],
                          num_classes=80, with_mask=True)
    losses = train_step(model, data)
    assert {'loss_rpn_cls', 'loss_bbox', 'loss_mask'} <= set(losses)


def test_upernet_with_coatnet_trains_one_step():
    from mmseg.structures import SegDataSample
    torch.manual_seed(0)
    model = build_from_config('upernet_coatnet_small.py', 'mmseg')
    assert type(model).__name__ == 'EncoderDecoder'
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64),
                                             pad_shape=(64, 64)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, 64, 64)))
        samples.append(sample)
    losses = train_step(model, dict(inputs=inputs, data_samples=samples))
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
