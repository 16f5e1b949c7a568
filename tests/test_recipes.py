"""The published-protocol recipes: each one equals the library config it inherits except where the
backbone needs otherwise, and one real training iteration of each family runs on the toy data
through mmdet's and mmseg's own tools/train.py (and ours), scaled down with --cfg-options."""
import glob
import json
import os.path as osp

import pytest
from helpers import ROOT, run_tool
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.utils import get_installed_path

from mmcoatnet.safe_load import safe_torch_load

MASK_RCNN_REF = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'
CASCADE_REF = ('mmdet::convnext/'
               'cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py')
UPERNET_REF = 'mmseg::convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py'
ARCHS = {0: 'coatnet-0-rw', 1: 'coatnet-1-rw', 2: 'coatnet-2-rw'}
WIDTHS = {0: [96, 192, 384, 768], 1: [96, 192, 384, 768], 2: [128, 256, 512, 1024]}

# What a recipe may change in the config it inherits: the backbone and what depends on its widths
# or names (neck / head in_channels, the optimizer's no-decay keys or lr-decay constructor); the
# protocol's AMP wrapper (and loss_scale) is what --amp sets, so the configs run on a CPU too; the
# project's import, RandomStateHook, SyncBN under DDP, the backbone bases' variables, and
# auto_scale_lr for --auto-scale-lr where the library config has none.
SHARED = ('model.backbone', 'custom_imports', 'custom_hooks', 'sync_bn', 'coatnet_')
ALLOWED = {
    'maskrcnn': SHARED + ('model.neck.in_channels', 'optim_wrapper.constructor',
                          'optim_wrapper.paramwise_cfg'),
    'cascade': SHARED + ('model.neck.in_channels', 'optim_wrapper.type',
                         'optim_wrapper.constructor', 'optim_wrapper.paramwise_cfg'),
    'upernet': SHARED + ('model.decode_head.in_channels', 'model.auxiliary_head.in_channels',
                         'optim_wrapper.type', 'optim_wrapper.constructor',
                         'optim_wrapper.paramwise_cfg', 'optim_wrapper.loss_scale',
                         'auto_scale_lr'),
}
RECIPES = {f'maskrcnn_coatnet{n}_ms-3x_coco.py': ('maskrcnn', MASK_RCNN_REF, n) for n in ARCHS}
RECIPES.update({f'cascade-maskrcnn_coatnet{n}_ms-3x_coco.py': ('cascade', CASCADE_REF, n)
                for n in ARCHS})
RECIPES.update({f'upernet_coatnet{n}_ade20k.py': ('upernet', UPERNET_REF, n) for n in ARCHS})


def library_config(name):
    """A library's own config named as in _base_ ('mmdet::x.py'), from its installed copy."""
    package, relative = name.split('::')
    return Config.fromfile(osp.join(get_installed_path(package), '.mim', 'configs', relative))


def differences(a, b, path=''):
    """Paths (dotted, list items by index) where two config trees differ; '_scope_' marks which
    library a base came from and is no setting."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b), key=str):
            if key == '_scope_':
                continue
            where = f'{path}.{key}' if path else str(key)
            if key not in a or key not in b:
                found.append(where)
            else:
                found += differences(a[key], b[key], where)
        return found
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f'{path}.{i}')]
    return [] if a == b else [path]


def drift(recipe_cfg, reference_cfg, family):
    """The differences from the reference that the family's recipes may not have."""
    found = differences(recipe_cfg.to_dict(), reference_cfg.to_dict())
    return [d for d in found if not d.startswith(ALLOWED[family])]


@pytest.fixture(scope='module')
def references():
    return {name: library_config(name) for name in (MASK_RCNN_REF, CASCADE_REF, UPERNET_REF)}


@pytest.mark.parametrize('recipe', sorted(RECIPES))
def test_recipe_is_its_protocol_with_a_coatnet_backbone(recipe, references):
    family, reference_name, n = RECIPES[recipe]
    cfg = Config.fromfile(osp.join(ROOT, 'configs', recipe))
    ref = references[reference_name]
    assert drift(cfg, ref, family) == []
    # what the recipe changes, it changes to CoAtNet's
    assert cfg.model.backbone.type == 'CoAtNet' and cfg.model.backbone.arch == ARCHS[n]
    assert cfg.custom_imports.imports == ['mmcoatnet']
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'AdamW' and optimizer.betas == (0.9, 0.999)
    if family == 'upernet':
        assert cfg.model.decode_head.in_channels == WIDTHS[n]
        assert cfg.model.auxiliary_head.in_channels == WIDTHS[n][2]
        assert (optimizer.lr, optimizer.weight_decay) == (1e-4, 0.05)
        assert cfg.train_cfg.max_iters == 160000 and cfg.train_dataloader.batch_size == 2
        assert [s.type for s in cfg.param_scheduler] == ['LinearLR', 'PolyLR']
        assert cfg.model.test_cfg.mode == 'slide'
        assert cfg.optim_wrapper.paramwise_cfg == dict(decay_type='stage_wise', decay_rate=0.9)
        # the multi-scale + flip test of --tta: six scales, each flipped and not
        scales, flips = cfg.tta_pipeline[1].transforms[:2]
        assert [t.scale_factor for t in scales] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
        assert [t.prob for t in flips] == [0., 1.]
    else:
        assert cfg.model.neck.in_channels == WIDTHS[n]
        assert cfg.train_cfg.max_epochs == 36 and cfg.train_dataloader.batch_size == 2
        assert cfg.param_scheduler[1].milestones == [27, 33]
        crop = cfg.train_pipeline[3].transforms[1]  # DETR's resize-crop-resize branch
        assert [t.type for t in crop] == ['RandomChoiceResize', 'RandomCrop', 'RandomChoiceResize']
        assert differences(cfg.train_dataloader.dataset.pipeline, cfg.train_pipeline) == []
    if family == 'maskrcnn':
        assert (optimizer.lr, optimizer.weight_decay) == (1e-4, 0.05)
        # no layer-wise decay: the constructor only applies the model's no-decay rule
        assert cfg.optim_wrapper.constructor == 'CoAtNetLayerDecayOptimizerConstructor'
        assert cfg.optim_wrapper.paramwise_cfg == {}
    if family == 'cascade':
        assert (optimizer.lr, optimizer.weight_decay) == (2e-4, 0.05)
        heads = cfg.model.roi_head.bbox_head
        assert [(h.type, h.num_shared_convs, h.num_shared_fcs, h.loss_bbox.type) for h in heads] \
            == [('ConvFCBBoxHead', 4, 1, 'GIoULoss')] * 3
        steps = sum((2, 3, 7, 2) if n == 0 else (2, 6, 14, 2)) + 1  # stem to heads
        assert cfg.optim_wrapper.constructor == 'CoAtNetLayerDecayOptimizerConstructor'
        assert cfg.optim_wrapper.paramwise_cfg.decay_type == 'layer_wise'
        assert cfg.optim_wrapper.paramwise_cfg.decay_rate ** steps == pytest.approx(0.7 ** 7)
    # the heads built from the recipe are the reference's, given the recipe's input widths
    init_default_scope(cfg.default_scope)
    if family == 'upernet':
        from mmseg.registry import MODELS
        heads = ('decode_head', 'auxiliary_head')
    else:
        from mmdet.registry import MODELS
        heads = ('rpn_head', 'roi_head')
    for head in heads:
        ours, theirs = MODELS.build(cfg.model[head]), MODELS.build(ref.model[head])
        if head == 'decode_head':  # the reference reads ConvNeXt-T's widths
            theirs = MODELS.build(dict(ref.model[head], in_channels=WIDTHS[n]))
        if head == 'auxiliary_head':
            theirs = MODELS.build(dict(ref.model[head], in_channels=WIDTHS[n][2]))
        assert structure(ours) == structure(theirs), head


def structure(module):
    return [(name, type(m).__name__) for name, m in module.named_modules()], \
        [(name, tuple(p.shape)) for name, p in module.state_dict().items()]


def test_a_changed_protocol_setting_is_caught(references):
    """The check above fails for any setting a recipe changes outside what it may change."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'maskrcnn_coatnet0_ms-3x_coco.py'))
    cfg.merge_from_dict({'train_cfg.max_epochs': 12,
                         'train_dataloader.dataset.pipeline.3.transforms.1.1.crop_size': (384, 500),
                         'model.roi_head.bbox_head.num_classes': 81,
                         'optim_wrapper.optimizer.lr': 2e-4})
    assert drift(cfg, references[MASK_RCNN_REF], 'maskrcnn') == [
        'model.roi_head.bbox_head.num_classes', 'optim_wrapper.optimizer.lr',
        'train_cfg.max_epochs', 'train_dataloader.dataset.pipeline.3.transforms.1.1.crop_size.1']


# ------------------------------------------------------------------ one training iteration each

def library_tool(package, name):
    """mmdet's / mmseg's own tools/<name>, as installed with the package."""
    return osp.join(get_installed_path(package), '.mim', 'tools', name)


def shrunk_pipeline(cfg, key, factor):
    """--cfg-options that divide every resize scale and crop size of the training pipeline at
    ``key`` by ``factor``, the recipe's transforms otherwise as they are."""
    options = []

    def visit(node, path):
        if isinstance(node, (list, tuple)):
            for i, item in enumerate(node):
                visit(item, f'{path}.{i}')
        elif isinstance(node, dict):
            for field in ('scales', 'scale', 'crop_size'):
                value = node.get(field)
                if value is None:
                    continue
                if isinstance(value[0], (list, tuple)):
                    value = [tuple(s // factor for s in size) for size in value]
                else:
                    value = tuple(s // factor for s in value)
                options.append(f'{path}.{field}={value!r}'.replace(' ', ''))
            if 'transforms' in node:  # RandomChoice: lists of transform lists
                visit(node['transforms'], f'{path}.transforms')

    visit(cfg.train_dataloader.dataset.pipeline, key)
    assert options, 'nothing to scale down: the run would train at full size'
    return options


def det_options(recipe, toy_data, work_dir):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', recipe))
    stages = cfg.model.train_cfg.rcnn
    samplers = ([f'model.train_cfg.rcnn.{i}.sampler.num=32' for i in range(len(stages))]
                if isinstance(stages, list) else ['model.train_cfg.rcnn.sampler.num=32'])
    return ['--work-dir', str(work_dir), '--cfg-options',
            f'train_dataloader.dataset.data_root={toy_data}/toy_coco/',
            'train_dataloader.dataset.ann_file=annotations/instances_train.json',
            'train_dataloader.dataset.data_prefix.img=train/',
            'train_dataloader.dataset.metainfo.classes=(circle,square,triangle)',
            'train_dataloader.dataset.indices=1', 'train_dataloader.batch_size=1',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'val_dataloader=None', 'val_cfg=None', 'val_evaluator=None',
            'train_cfg.max_epochs=1', 'model.backbone.init_cfg=None',
            'model.train_cfg.rpn_proposal.nms_pre=200',
            'model.train_cfg.rpn_proposal.max_per_img=64',
            'default_hooks.checkpoint.save_last=False', 'default_hooks.checkpoint.interval=2',
            'default_hooks.logger.interval=1', 'randomness.seed=0',
            *samplers, *shrunk_pipeline(cfg, 'train_dataloader.dataset.pipeline', 5)]


def losses(work_dir):
    """The training records of a run's json log."""
    records = []
    for log in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(log) as f:
            records += [json.loads(line) for line in f if '"loss"' in line]
    return records


@pytest.mark.slow
def test_mask_rcnn_recipe_trains_one_iteration_with_mmdets_own_train_tool(tmp_path, toy_data):
    recipe = 'maskrcnn_coatnet0_ms-3x_coco.py'
    result = run_tool(library_tool('mmdet', 'train.py'), osp.join('configs', recipe),
                 *det_options(recipe, toy_data, tmp_path / 'w'))
    records = losses(tmp_path / 'w')
    assert len(records) == 1 and records[0]['loss'] > 0
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= records[0].keys()
    assert 'CoAtNet' in result.stdout + result.stderr


@pytest.mark.slow
def test_cascade_recipe_trains_one_iteration_with_layer_decay(tmp_path, toy_data):
    recipe = 'cascade-maskrcnn_coatnet0_ms-3x_coco.py'
    result = run_tool('tools/train.py', osp.join('configs', recipe),
                 *det_options(recipe, toy_data, tmp_path / 'w'))
    log = result.stdout + result.stderr
    assert 'CoAtNetLayerDecayOptimizerConstructor: layer_wise' in log
    assert 'backbone.stages.3.blocks.1.*' in log
    records = losses(tmp_path / 'w')
    assert len(records) == 1
    # three GIoU stages and three mask stages
    assert {f's{i}.loss_bbox' for i in range(3)} | {f's{i}.loss_mask' for i in range(3)} \
        <= records[0].keys()


def seg_options(toy_data, work_dir):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'upernet_coatnet0_ade20k.py'))
    data = [f'{split}_dataloader.{key}' for split in ('train', 'test')
            for key in ('num_workers=0', 'persistent_workers=False')]
    return ['--work-dir', str(work_dir), '--cfg-options',
            f'train_dataloader.dataset.data_root={toy_data}/toy_ade',
            f'test_dataloader.dataset.data_root={toy_data}/toy_ade',
            'train_dataloader.dataset.indices=2', 'test_dataloader.dataset.indices=1', *data,
            'val_dataloader=None', 'val_cfg=None', 'val_evaluator=None',
            'train_cfg.max_iters=1', 'default_hooks.checkpoint.interval=1',
            'default_hooks.logger.interval=1', 'randomness.seed=0',
            # a small backbone and heads: the checkpoint the --tta test reads stays small
            'model.backbone.arch=coatnet-pico', 'model.backbone.init_cfg=None',
            'model.decode_head.in_channels=[32,64,128,256]', 'model.decode_head.channels=64',
            'model.auxiliary_head.in_channels=128', 'model.auxiliary_head.channels=32',
            'model.data_preprocessor.size=(128,128)',
            *shrunk_pipeline(cfg, 'train_dataloader.dataset.pipeline', 4)]


@pytest.mark.slow
def test_upernet_recipe_trains_with_mmsegs_tool_and_tests_single_scale_and_with_tta(tmp_path,
                                                                                    toy_data):
    config = osp.join('configs', 'upernet_coatnet0_ade20k.py')
    options = seg_options(toy_data, tmp_path / 'w')
    result = run_tool(library_tool('mmseg', 'train.py'), config, *options)
    assert 'CoAtNetLayerDecayOptimizerConstructor: stage_wise' in result.stdout + result.stderr
    checkpoint = tmp_path / 'w' / 'iter_1.pth'
    # the groups the optimizer trained with: stem, S1-S4 and the heads at 0.9^5 ... 0.9^0
    groups = safe_torch_load(str(checkpoint))['optimizer']['param_groups']
    scales = sorted({round(g['initial_lr'] / 1e-4, 6) for g in groups})
    assert scales == [round(0.9 ** k, 6) for k in range(5, -1, -1)]
    assert {g['weight_decay'] for g in groups} == {0.05, 0.}
    assert len(losses(tmp_path / 'w')) == 1
    # evaluation as the README gives it: single-scale, and multi-scale + flip with mmseg's --tta
    test = options[2:]  # the same --cfg-options, another work dir
    single = run_tool('tools/test.py', config, str(checkpoint), '--work-dir',
                      str(tmp_path / 't1'), *test)
    tta = run_tool(library_tool('mmseg', 'test.py'), config, str(checkpoint), '--tta',
                   '--work-dir', str(tmp_path / 't2'), *test)
    for output in (single, tta):
        assert 'mIoU' in output.stdout + output.stderr
