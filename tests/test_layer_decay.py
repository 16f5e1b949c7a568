"""CoAtNetLayerDecayOptimizerConstructor: the learning rate and weight decay each named parameter
gets in the optimizer built from the shipped recipes (real models, real optimizers), both decay
types, the logged table, and the errors."""
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mmcoatnet.models import CoAtNet

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
RW0_DEPTHS = (2, 3, 7, 2)  # coatnet-0-rw blocks per stage (README, timm's coatnet_0_rw_224)


def fresh_log(tmp_path, name):
    """A new current MMLogger writing to a file, so the constructor's table can be read back."""
    path = tmp_path / f'{name}.log'
    MMLogger.get_instance(f'layer_decay_{name}', log_file=str(path), log_level='INFO')
    return path


def build_recipe(config):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', config))
    init_default_scope(cfg.default_scope)
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    model = MODELS.build(cfg.model)
    return cfg, model, build_optim_wrapper(model, cfg.optim_wrapper)


def settings(model, optim_wrapper):
    """name -> (lr, weight decay) of every parameter in the optimizer."""
    by_id = {}
    for group in optim_wrapper.optimizer.param_groups:
        for param in group['params']:
            assert id(param) not in by_id, 'a parameter in two groups'
            by_id[id(param)] = (group['lr'], group['weight_decay'])
    return {name: by_id[id(p)] for name, p in model.named_parameters() if id(p) in by_id}


def test_layer_wise_decay_of_the_cascade_recipe(tmp_path):
    log = fresh_log(tmp_path, 'layer_wise')
    cfg, model, optim_wrapper = build_recipe('cascade-maskrcnn_coatnet0_ms-3x_coco.py')
    assert type(model.backbone) is CoAtNet and model.backbone.arch_name == 'coatnet-0-rw'
    rate, lr, wd = 0.7 ** (7 / 15), 2e-4, 0.05
    assert cfg.optim_wrapper.paramwise_cfg.decay_rate == pytest.approx(rate)
    got = settings(model, optim_wrapper)
    assert len(got) == len(list(model.parameters()))  # nothing frozen: every parameter is trained
    top = sum(RW0_DEPTHS) + 1  # 15: the stem at 0, 14 blocks at 1-14, neck and heads at 15
    s3_first = 1 + RW0_DEPTHS[0] + RW0_DEPTHS[1]  # 6
    s3_last = s3_first + RW0_DEPTHS[2] - 1  # 12
    s4_last = sum(RW0_DEPTHS)  # 14
    expected = {
        'backbone.stem.conv1.weight': (lr * rate ** top, wd),
        'backbone.stem.norm1.weight': (lr * rate ** top, 0.),
        'backbone.stages.2.blocks.0.attn.qkv.weight': (lr * rate ** (top - s3_first), wd),
        'backbone.stages.2.blocks.0.attn.qkv.bias': (lr * rate ** (top - s3_first), 0.),
        'backbone.stages.2.blocks.0.attn.rel_pos.table': (lr * rate ** (top - s3_first), 0.),
        'backbone.stages.2.blocks.6.mlp.fc1.weight': (lr * rate ** (top - s3_last), wd),
        'backbone.stages.2.blocks.6.attn.rel_pos.table': (lr * rate ** (top - s3_last), 0.),
        'backbone.stages.3.blocks.1.norm2.weight': (lr * rate ** (top - s4_last), 0.),
        'backbone.stages.3.blocks.1.mlp.fc2.weight': (lr * rate ** (top - s4_last), wd),
        'neck.fpn_convs.0.conv.weight': (lr, wd),
        'roi_head.bbox_head.2.fc_cls.weight': (lr, wd),
        'roi_head.bbox_head.2.fc_cls.bias': (lr, 0.),
        'roi_head.bbox_head.0.shared_convs.0.bn.weight': (lr, 0.),  # the 4conv1fc head's SyncBN
        'roi_head.mask_head.0.convs.0.conv.weight': (lr, wd),
    }
    for name, (want_lr, want_wd) in expected.items():
        assert got[name] == (pytest.approx(want_lr, rel=1e-9), want_wd), name
    # the stem keeps mmdet's ConvNeXt recipe's bottom scale, 0.7 ** 7
    assert got['backbone.stem.conv1.weight'][0] == pytest.approx(lr * 0.7 ** 7)
    # one group per (depth, decay): 16 depths with and without decay
    assert len(optim_wrapper.optimizer.param_groups) == 2 * (top + 1)
    text = log.read_text()
    assert 'CoAtNetLayerDecayOptimizerConstructor: layer_wise' in text
    assert 'name pattern' in text and 'lr scale' in text and 'weight decay' in text
    assert 'backbone.stem.*' in text and 'backbone.stages.2.blocks.6.*' in text
    assert 'neck.*, rpn_head.*, roi_head.*' in text


def test_stage_wise_decay_of_the_upernet_recipe(tmp_path):
    log = fresh_log(tmp_path, 'stage_wise')
    cfg, model, optim_wrapper = build_recipe('upernet_coatnet0_ade20k.py')
    rate, lr, wd = 0.9, 1e-4, 0.05
    got = settings(model, optim_wrapper)
    expected = {  # stem 0, S1-S4 1-4, heads 5
        'backbone.stem.conv1.weight': (lr * rate ** 5, wd),
        'backbone.stages.0.blocks.0.conv1_1x1.weight': (lr * rate ** 4, wd),
        'backbone.stages.2.blocks.0.attn.qkv.weight': (lr * rate ** 2, wd),
        'backbone.stages.2.blocks.6.mlp.fc1.weight': (lr * rate ** 2, wd),
        'backbone.stages.2.blocks.3.attn.rel_pos.table': (lr * rate ** 2, 0.),
        'backbone.stages.3.blocks.0.norm1.weight': (lr * rate, 0.),
        'backbone.stages.3.blocks.0.attn.proj.weight': (lr * rate, wd),
        'decode_head.conv_seg.weight': (lr, wd),
        'decode_head.fpn_bottleneck.bn.weight': (lr, 0.),
        'auxiliary_head.conv_seg.bias': (lr, 0.),
    }
    for name, (want_lr, want_wd) in expected.items():
        assert got[name] == (pytest.approx(want_lr, rel=1e-9), want_wd), name
    assert len(optim_wrapper.optimizer.param_groups) == 2 * 6
    text = log.read_text()
    assert 'stage_wise' in text and 'backbone.stages.3.blocks.*' in text
    assert 'decode_head.*, auxiliary_head.*' in text


class Classifier(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(64, 10)


def small_backbone(**kwargs):
    """Two transformer stages with LayerScale and timm's relative-position MLP."""
    arch = dict(depths=(1, 1, 2, 1), channels=(16, 32, 64, 64), stem_channels=(16, 16),
                transformer=dict(layer_scale=1e-5, rel_pos='mlp', rel_pos_mlp_dim=32))
    return CoAtNet(arch=arch, pretrain_img_size=64, **kwargs)


def optimizer_for(model, **paramwise):
    return build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.1),
        constructor='CoAtNetLayerDecayOptimizerConstructor', paramwise_cfg=paramwise))


def test_layer_scale_and_the_rel_pos_mlp_get_no_decay_and_frozen_stages_are_left_out():
    model = Classifier(small_backbone(frozen_stages=1))
    got = settings(model, optimizer_for(model, decay_rate=0.5))
    assert not [name for name in got if name.startswith(('backbone.stem.', 'backbone.stages.0.'))]
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(got) == sorted(trained)
    # depths: stem 0, blocks 1-5, head 6; S3's second block is block 4
    assert got['backbone.stages.2.blocks.1.ls1.gamma'] == (pytest.approx(1e-3 * 0.5 ** 2), 0.)
    assert got['backbone.stages.2.blocks.1.attn.rel_pos.mlp.fc1.weight'][1] == 0.
    s3_lr, s2_lr = 1e-3 * 0.5 ** 2, 1e-3 * 0.5 ** 4
    assert got['backbone.stages.2.blocks.1.attn.qkv.weight'] == (pytest.approx(s3_lr), 0.1)
    assert got['backbone.stages.1.blocks.0.conv1_1x1.weight'] == (pytest.approx(s2_lr), 0.1)
    assert got['head.weight'] == (1e-3, 0.1) and got['head.bias'] == (1e-3, 0.)


def test_a_step_moves_each_weight_by_its_groups_lr():
    """The groups are what AdamW steps with: Adam's first step moves a weight without weight decay
    by lr * grad / (|grad| + eps), its group's lr wherever the gradient is well above eps."""
    torch.manual_seed(0)
    model = Classifier(small_backbone())
    optim_wrapper = optimizer_for(model, decay_rate=0.5, decay_type='stage_wise')
    s3_gamma = model.backbone.stages[2].blocks[0].ls1.gamma  # S3: depth 3 of 5
    weights = {'s3': (s3_gamma, 1e-3 * 0.5 ** 2), 'head': (model.head.bias, 1e-3)}
    before = {key: weight.detach().clone() for key, (weight, _) in weights.items()}
    features = model.backbone(torch.randn(2, 3, 64, 64))[-1].mean((2, 3))
    optim_wrapper.backward(1e3 * model.head(features).square().mean())
    grads = {key: weight.grad.clone() for key, (weight, _) in weights.items()}
    optim_wrapper.step()
    for key, (weight, lr) in weights.items():
        clear = grads[key].abs() > 1e-5  # eps (1e-8) changes these steps by < 0.1%
        assert clear.any(), key
        step = (weight.detach() - before[key]).abs()[clear]
        assert torch.allclose(step, torch.full_like(step, lr), rtol=1e-3), key


def test_wrong_settings_and_other_backbones_are_refused():
    model = Classifier(small_backbone())
    with pytest.raises(ValueError, match=r"unknown \['num_layers'\]"):
        optimizer_for(model, decay_rate=0.9, num_layers=6)
    with pytest.raises(ValueError, match='decay_type is one of'):
        optimizer_for(model, decay_rate=0.9, decay_type='block_wise')
    with pytest.raises(ValueError, match=r'decay_rate must be in \(0, 1\]'):
        optimizer_for(model, decay_rate=1.5)
    with pytest.raises(ValueError, match=r"custom_keys\['backbone'\] takes .* unknown \['lr'\]"):
        optimizer_for(model, custom_keys={'backbone': dict(lr=0.1)})
    other = Classifier(nn.Conv2d(3, 64, 3))
    with pytest.raises(TypeError, match='backbone is a CoAtNet, got Conv2d'):
        optimizer_for(other, decay_rate=0.9)


def test_without_a_decay_rate_every_lr_is_the_optimizers_and_the_no_decay_rule_holds():
    """The Mask R-CNN 3x recipe names the constructor with an empty paramwise_cfg: no layer-wise
    decay, and still no weight decay on tables, norms and biases (mmengine's default constructor
    skips its per-parameter pass for an empty paramwise_cfg; this one must not)."""
    cfg, model, optim_wrapper = build_recipe('maskrcnn_coatnet0_ms-3x_coco.py')
    assert cfg.optim_wrapper.paramwise_cfg == {}
    got = settings(model, optim_wrapper)
    assert {lr for lr, _ in got.values()} == {1e-4}
    assert got['backbone.stages.2.blocks.0.attn.rel_pos.table'][1] == 0.
    assert got['backbone.stem.norm1.weight'][1] == 0. and got['neck.fpn_convs.0.conv.bias'][1] == 0.
    assert got['backbone.stages.2.blocks.0.attn.qkv.weight'][1] == 0.05
    assert got['roi_head.mask_head.convs.0.conv.weight'][1] == 0.05


def test_the_mask2former_protocol_keys_on_top_of_the_no_decay_rule():
    """mmseg's Mask2Former protocol: the backbone at lr x 0.1 and the query and level embeddings
    without weight decay (custom_keys), CoAtNet's no-decay rule in place of Swin's names, and
    layer-wise decay multiplying the backbone's lr_mult when a config adds it."""
    cfg, model, optim_wrapper = build_recipe('mask2former_coatnet0_ade20k.py')
    got = settings(model, optim_wrapper)
    assert len(got) == len(list(model.parameters()))
    lr, wd = 1e-4, 0.05
    expected = {
        'backbone.stem.conv1.weight': (lr * 0.1, wd),
        'backbone.stem.norm1.weight': (lr * 0.1, 0.),
        'backbone.stages.2.blocks.0.attn.qkv.weight': (lr * 0.1, wd),
        'backbone.stages.2.blocks.0.attn.rel_pos.table': (lr * 0.1, 0.),
        'decode_head.query_embed.weight': (lr, 0.),
        'decode_head.query_feat.weight': (lr, 0.),
        'decode_head.transformer_decoder.layers.0.cross_attn.attn.in_proj_weight': (lr, wd),
        'decode_head.transformer_decoder.layers.0.norms.0.weight': (lr, 0.),
    }
    for name, (want_lr, want_wd) in expected.items():
        assert got[name] == (pytest.approx(want_lr, rel=1e-9), want_wd), name
    level_embeds = [name for name in got if 'level_embed' in name]
    assert level_embeds and all(got[name][1] == 0. for name in level_embeds)
    cfg.optim_wrapper.paramwise_cfg.update(decay_type='stage_wise', decay_rate=0.9)
    got = settings(model, build_optim_wrapper(model, cfg.optim_wrapper))
    assert got['backbone.stem.conv1.weight'][0] == pytest.approx(lr * 0.1 * 0.9 ** 5)
    assert got['backbone.stages.3.blocks.0.mlp.fc1.weight'][0] == pytest.approx(lr * 0.1 * 0.9)
    assert got['decode_head.query_embed.weight'] == (pytest.approx(lr), 0.)


def test_the_backbone_answers_depths_and_no_decay_names():
    backbone = small_backbone()  # blocks per stage (1, 1, 2, 1): depths 1-5, the top 6
    assert backbone.get_layer_depth('backbone.stem.conv1.weight', 'backbone.') == (0, 7)
    assert backbone.get_layer_depth('backbone.stages.2.blocks.1.attn.qkv.weight',
                                    'backbone.') == (4, 7)
    assert backbone.get_layer_depth('backbone.stages.2.blocks.1.attn.qkv.weight', 'backbone.',
                                    'stage_wise') == (3, 6)
    assert backbone.get_layer_depth('head.fc.weight', 'backbone.') == (6, 7)
    with pytest.raises(ValueError, match='decay_type is one of'):
        backbone.get_layer_depth('backbone.stem.conv1.weight', 'backbone.', 'block_wise')
    names = backbone.no_weight_decay()
    assert 'stages.2.blocks.1.ls1.gamma' in names
    assert 'stages.3.blocks.0.attn.rel_pos.mlp.fc1.weight' in names
    assert not [n for n in names if 'qkv' in n or n.startswith('stem.')]
