"""The published-protocol recipes: each one equals the library config it inherits except where the
backbone needs otherwise; each family, as shipped, trains a few iterations and evaluates on the
toy scenes laid out as COCO 2017 and ADE20K at a root other than data/, from checkpoints converted
from timm's weights, through our tools and mmdet's and mmseg's own; only the schedule and the
image size are changed on the command line."""
import glob
import json
import os
import os.path as osp
import re

import pytest
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope
from mmengine.utils import get_installed_path

from mmcoatnet.safe_load import safe_torch_load

from helpers import ROOT, run_tool

TRAIN = osp.join(ROOT, 'tools', 'train.py')
TEST = osp.join(ROOT, 'tools', 'test.py')

MASK_RCNN_REF = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'
CASCADE_REF = ('mmdet::convnext/'
               'cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py')
UPERNET_REF = 'mmseg::convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py'
DINO_REF = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
MASK2FORMER_ADE_REF = 'mmseg::mask2former/mask2former_swin-t_8xb2-160k_ade20k-512x512.py'
MASK2FORMER_COCO_REF = 'mmdet::mask2former/mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco.py'
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
    # the protocol's optimizer as it is (the backbone at lr x 0.1 by its custom_keys)
    'dino': SHARED + ('model.neck.in_channels',),
    # Swin's no-decay names in custom_keys become the constructor's rule for CoAtNet's parameters
    'mask2former_ade': SHARED + ('model.decode_head.in_channels', 'optim_wrapper.constructor',
                                 'optim_wrapper.paramwise_cfg'),
    'mask2former_coco': SHARED + ('model.panoptic_head.in_channels', 'optim_wrapper.constructor',
                                  'optim_wrapper.paramwise_cfg'),
}
RECIPES = {f'maskrcnn_coatnet{n}_ms-3x_coco.py': ('maskrcnn', MASK_RCNN_REF, n) for n in ARCHS}
RECIPES.update({f'cascade-maskrcnn_coatnet{n}_ms-3x_coco.py': ('cascade', CASCADE_REF, n)
                for n in ARCHS})
RECIPES.update({f'upernet_coatnet{n}_ade20k.py': ('upernet', UPERNET_REF, n) for n in ARCHS})
RECIPES.update({f'dino-4scale_coatnet{n}_12e_coco.py': ('dino', DINO_REF, n) for n in ARCHS})
RECIPES.update({f'mask2former_coatnet{n}_ade20k.py': ('mask2former_ade', MASK2FORMER_ADE_REF, n)
                for n in ARCHS})
RECIPES.update({f'mask2former_coatnet{n}_lsj-50e_coco.py':
                ('mask2former_coco', MASK2FORMER_COCO_REF, n) for n in (0, 1)})
# the query-based heads' protocols: the backbone at lr x 0.1, the head's embeddings without weight
# decay (Mask2Former)
MASK2FORMER_CUSTOM_KEYS = {
    'backbone': dict(lr_mult=0.1, decay_mult=1.0),
    **{name: dict(lr_mult=1.0, decay_mult=0.0)
       for name in ('query_embed', 'query_feat', 'level_embed')}}


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
    return {name: library_config(name) for name in {ref for _, ref, _ in RECIPES.values()}}


@pytest.mark.parametrize('recipe', sorted(RECIPES))
def test_recipe_is_its_protocol_with_a_coatnet_backbone(recipe, references):
    family, reference_name, n = RECIPES[recipe]
    cfg = Config.fromfile(osp.join(ROOT, 'configs', recipe))
    ref = references[reference_name]
    assert drift(cfg, ref, family) == []
    # what the recipe changes, it changes to CoAtNet's
    assert cfg.model.backbone.type == 'CoAtNet' and cfg.model.backbone.arch == ARCHS[n]
    assert cfg.custom_imports.imports[0] == 'mmcoatnet'
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'AdamW'
    if family in QUERY_HEADS:
        check_query_head_protocol(cfg, ref, family, n)
        return
    assert optimizer.betas == (0.9, 0.999)
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


QUERY_HEADS = ('dino', 'mask2former_ade', 'mask2former_coco')


def check_query_head_protocol(cfg, ref, family, n):
    """A DINO or Mask2Former recipe: the protocol's schedule and optimizer, the backbone's
    widths where the neck or head reads them, and the whole model built from the recipe equal to the
    library's given those widths and our backbone."""
    optimizer, paramwise = cfg.optim_wrapper.optimizer, cfg.optim_wrapper.paramwise_cfg
    model = ConfigDict(ref.model.to_dict())  # a copy; the heads read attributes
    model.backbone = cfg.model.backbone
    if family == 'dino':
        # 4 scales: S2-S4 and the neck's stride-64 level
        assert cfg.model.backbone.out_indices == (1, 2, 3)
        assert cfg.model.neck.in_channels == WIDTHS[n][1:] and cfg.model.neck.num_outs == 4
        assert (optimizer.lr, optimizer.weight_decay) == (1e-4, 1e-4)
        assert cfg.optim_wrapper.get('constructor') is None  # mmengine's default, as published
        assert paramwise.custom_keys == {'backbone': dict(lr_mult=0.1)}
        assert cfg.optim_wrapper.clip_grad.max_norm == 0.1
        assert cfg.train_cfg.max_epochs == 12 and cfg.param_scheduler[0].milestones == [11]
        model['neck']['in_channels'] = WIDTHS[n][1:]
        from mmdet.registry import MODELS
    else:
        assert (optimizer.lr, optimizer.weight_decay) == (1e-4, 0.05)
        assert cfg.optim_wrapper.constructor == 'CoAtNetLayerDecayOptimizerConstructor'
        assert paramwise == dict(custom_keys=MASK2FORMER_CUSTOM_KEYS)
        assert cfg.optim_wrapper.clip_grad.max_norm == 0.01
        head = 'decode_head' if family == 'mask2former_ade' else 'panoptic_head'
        assert cfg.model[head].in_channels == WIDTHS[n]
        model[head]['in_channels'] = WIDTHS[n]
        if family == 'mask2former_ade':
            assert cfg.train_cfg.max_iters == 160000 and cfg.crop_size == (512, 512)
            from mmseg.registry import MODELS
        else:
            assert cfg.train_cfg.max_iters == 368750 and cfg.image_size == (1024, 1024)
            from mmdet.registry import MODELS
    assert cfg.train_dataloader.batch_size == 2
    init_default_scope(cfg.default_scope)
    assert structure(MODELS.build(cfg.model)) == structure(MODELS.build(model))


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


def shrunk(node, path, factor):
    """--cfg-options that divide every resize scale and crop size under ``node`` (a pipeline, a
    model's test_cfg) by ``factor``, the recipe's settings otherwise as they are."""
    options = []
    if isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            options += shrunk(item, f'{path}.{i}', factor)
    elif isinstance(node, dict):
        for field in ('scales', 'scale', 'crop_size', 'stride', 'size'):
            value = node.get(field)
            if not isinstance(value, (list, tuple)):
                continue
            if isinstance(value[0], (list, tuple)):
                value = [tuple(s // factor for s in size) for size in value]
            else:
                value = tuple(s // factor for s in value)
            options.append(f'{path}.{field}={value!r}'.replace(' ', ''))
        for nested in ('transforms', 'batch_augments'):  # RandomChoice's lists; LSJ's padding
            if nested in node:
                options += shrunk(node[nested], f'{path}.{nested}', factor)
    return options


def schedule_and_size(recipe, factor):
    """The only changes a recipe gets here: a schedule of a few iterations and images ``factor``
    times smaller (its resizes, crops and, for UperNet, the sliding-window test), and data loading
    in the main process."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', recipe))
    options = []
    for split in ('train', 'val', 'test'):
        options += [f'{split}_dataloader.num_workers=0',
                    f'{split}_dataloader.persistent_workers=False']
        options += shrunk(cfg[f'{split}_dataloader'].dataset.pipeline,
                          f'{split}_dataloader.dataset.pipeline', factor)
    if cfg.train_cfg.type == 'IterBasedTrainLoop':
        options += ['train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                    'default_hooks.checkpoint.interval=2']
        options += shrunk(cfg.model.test_cfg, 'model.test_cfg', factor)
        options += shrunk(cfg.model.data_preprocessor, 'model.data_preprocessor', factor)
    else:
        # one epoch of one image, then the validation
        options += ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                    'train_dataloader.batch_size=1', 'train_dataloader.dataset.indices=1']
    return options + ['default_hooks.logger.interval=1', 'randomness.seed=0']


def losses(work_dir):
    """The training records of a run's json log."""
    records = []
    for log in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(log) as f:
            records += [json.loads(line) for line in f if '"loss"' in line]
    return records


def evaluation(work_dir):
    """The last evaluation record a run of tools/train.py or tools/test.py logged: its metrics
    (none where an untrained detector found no object in the images)."""
    records = []
    for log in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')) + \
            glob.glob(osp.join(work_dir, '*', '*.json')):
        with open(log) as f:
            records += [json.loads(line) for line in f if '"loss"' not in line]
    assert records, f'no evaluation logged in {work_dir}'
    return records[-1]


def dumped_config(work_dir):
    """The config a run used, as mmengine dumps it into its work dir."""
    path, = glob.glob(osp.join(work_dir, '*.py'))
    return Config.fromfile(path)


def run_recipe(tool, recipe, cwd, *args):
    """A tool run on a recipe from ``cwd``, which holds checkpoints/ (the recipe's pretrained
    backbone, relative to where the tool runs)."""
    return run_tool(tool, osp.join(ROOT, 'configs', recipe), *args, cwd=cwd)


@pytest.fixture
def workdir(tmp_path, recipe_checkpoints):
    """A folder to run recipes from: checkpoints/ as a user has it after the download commands."""
    os.symlink(recipe_checkpoints / 'checkpoints', tmp_path / 'checkpoints')
    return tmp_path


@pytest.mark.slow
def test_mask_rcnn_1x_trains_and_evaluates_on_coco_at_another_root(workdir, real_layout_data):
    """configs/maskrcnn_coatnet1_coco.py as shipped, its ImageNet weights from checkpoints/, on a
    COCO 2017 layout under a root other than data/ (which does not exist): --data-root moves the
    datasets and the evaluator's annotation file, and tools/test.py evaluates the checkpoint."""
    recipe, root = 'maskrcnn_coatnet1_coco.py', str(real_layout_data / 'coco')
    options = ['--data-root', root, '--cfg-options', *schedule_and_size(recipe, 8)]
    result = run_recipe(TRAIN, recipe, workdir, '--work-dir', str(workdir / 'w'), *options)
    # the converted timm checkpoint, every tensor of it, reported by the checkpoint adapter
    assert re.search(r'loaded (\d+)/\1 tensors from checkpoints/coatnet_1_rw_224.sw_in1k.pth',
                     result.stdout + result.stderr)
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= losses(workdir / 'w')[0].keys()
    used = dumped_config(workdir / 'w')
    assert used.val_evaluator.ann_file == osp.join(root, 'annotations', 'instances_val2017.json')
    assert used.test_evaluator.ann_file == used.val_evaluator.ann_file
    assert used.train_dataloader.dataset.data_root == root
    run_recipe(TEST, recipe, workdir, str(workdir / 'w' / 'epoch_1.pth'),
               '--work-dir', str(workdir / 't'), *options)
    assert {'coco/bbox_mAP', 'coco/segm_mAP'} <= evaluation(workdir / 't').keys()


def test_without_data_root_the_evaluator_file_left_behind_is_named(tmp_path, real_layout_data):
    """The dataloaders' data_root alone moved: the evaluator would still read data/coco's
    annotations, and the preflight names that file before anything is built."""
    root = str(real_layout_data / 'coco') + '/'
    result = run_tool(TRAIN, osp.join(ROOT, 'configs', 'maskrcnn_coatnet0_coco.py'),
                      '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                      f'train_dataloader.dataset.data_root={root}',
                      f'val_dataloader.dataset.data_root={root}',
                      'model.backbone.init_cfg=None', check=False, cwd=tmp_path)
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    assert 'data/coco/annotations/instances_val2017.json' in result.stderr
    assert '--data-root' in result.stderr


@pytest.mark.slow
def test_mask_rcnn_3x_trains_with_mmdets_own_tool_and_every_path_set(workdir, real_layout_data):
    """mmdet's own tools/train.py takes no --data-root: the documented --cfg-options equivalent
    (docs/training.md) sets every dataset and evaluator path."""
    recipe, root = 'maskrcnn_coatnet0_ms-3x_coco.py', str(real_layout_data / 'coco') + '/'
    paths = [f'{split}_dataloader.dataset.data_root={root}' for split in ('train', 'val', 'test')]
    paths += [f'{split}_evaluator.ann_file={root}annotations/instances_val2017.json'
              for split in ('val', 'test')]
    result = run_recipe(library_tool('mmdet', 'train.py'), recipe, workdir,
                        '--work-dir', str(workdir / 'w'), '--cfg-options', *paths,
                        *schedule_and_size(recipe, 8))
    assert 'CoAtNet' in result.stdout + result.stderr
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= losses(workdir / 'w')[0].keys()
    assert 'Evaluating bbox' in result.stdout + result.stderr  # the validation after the epoch


@pytest.mark.slow
def test_cascade_recipe_trains_with_layer_decay_and_validates(workdir, real_layout_data):
    recipe = 'cascade-maskrcnn_coatnet0_ms-3x_coco.py'
    result = run_recipe(TRAIN, recipe, workdir, '--work-dir', str(workdir / 'w'),
                        '--data-root', str(real_layout_data / 'coco'), '--cfg-options',
                        *schedule_and_size(recipe, 8))
    log = result.stdout + result.stderr
    assert 'CoAtNetLayerDecayOptimizerConstructor: layer_wise' in log
    assert 'backbone.stages.3.blocks.1.*' in log
    records = losses(workdir / 'w')
    # three GIoU stages and three mask stages
    assert {f's{i}.loss_bbox' for i in range(3)} | {f's{i}.loss_mask' for i in range(3)} \
        <= records[0].keys()
    assert 'Evaluating bbox' in log  # the validation after the epoch


@pytest.mark.slow
def test_upernet_recipe_trains_with_mmsegs_tool_and_tests_single_scale_and_with_tta(
        workdir, real_layout_data):
    recipe, root = 'upernet_coatnet0_ade20k.py', real_layout_data / 'ade' / 'ADEChallengeData2016'
    paths = [f'{split}_dataloader.dataset.data_root={root}' for split in ('train', 'val', 'test')]
    options = ['--cfg-options', *paths, *schedule_and_size(recipe, 4)]
    result = run_recipe(library_tool('mmseg', 'train.py'), recipe, workdir,
                        '--work-dir', str(workdir / 'w'), *options)
    assert 'CoAtNetLayerDecayOptimizerConstructor: stage_wise' in result.stdout + result.stderr
    checkpoint = workdir / 'w' / 'iter_2.pth'
    # the groups the optimizer trained with: stem, S1-S4 and the heads at 0.9^5 ... 0.9^0
    groups = safe_torch_load(str(checkpoint))['optimizer']['param_groups']
    scales = sorted({round(g['initial_lr'] / 1e-4, 6) for g in groups})
    assert scales == [round(0.9 ** k, 6) for k in range(5, -1, -1)]
    assert {g['weight_decay'] for g in groups} == {0.05, 0.}
    assert len(losses(workdir / 'w')) == 2
    # evaluation as docs/training.md gives it: single-scale with our tool and --data-root, and
    # multi-scale + flip with mmseg's own --tta
    run_recipe(TEST, recipe, workdir, str(checkpoint), '--work-dir', str(workdir / 't1'),
               '--data-root', str(root), '--cfg-options', *schedule_and_size(recipe, 4))
    run_recipe(library_tool('mmseg', 'test.py'), recipe, workdir, str(checkpoint), '--tta',
               '--work-dir', str(workdir / 't2'), *options)
    for work_dir in ('t1', 't2'):
        assert 'mIoU' in evaluation(workdir / work_dir)


@pytest.mark.slow
def test_dino_recipe_trains_and_evaluates_on_coco_at_another_root(workdir, real_layout_data):
    """The 4-scale DINO recipe as shipped, through our tools with --data-root: its losses (the
    denoising queries' among them), the backbone at lr x 0.1, a box mAP from tools/test.py."""
    recipe, root = 'dino-4scale_coatnet0_12e_coco.py', str(real_layout_data / 'coco')
    # half the size: the encoder's 4 levels must hold the 900 tokens the queries are chosen from
    options = ['--data-root', root, '--cfg-options', *schedule_and_size(recipe, 2)]
    result = run_recipe(TRAIN, recipe, workdir, '--work-dir', str(workdir / 'w'), *options)
    assert re.search(r'loaded (\d+)/\1 tensors from checkpoints/coatnet_0_rw_224.sw_in1k.pth',
                     result.stdout + result.stderr)
    assert {'loss_cls', 'loss_bbox', 'loss_iou', 'dn_loss_cls', 'enc_loss_cls'} \
        <= losses(workdir / 'w')[0].keys()
    groups = safe_torch_load(str(workdir / 'w' / 'epoch_1.pth'))['optimizer']['param_groups']
    assert sorted({round(g['initial_lr'] / 1e-4, 6) for g in groups}) == [0.1, 1.0]
    run_recipe(TEST, recipe, workdir, str(workdir / 'w' / 'epoch_1.pth'),
               '--work-dir', str(workdir / 't'), *options)
    assert 'coco/bbox_mAP' in evaluation(workdir / 't')


@pytest.mark.slow
def test_mask2former_ade20k_recipe_trains_with_mmsegs_tool_and_tests_with_ours(
        workdir, real_layout_data):
    """Mask2Former on the ADE20K layout: mmseg's own tools/train.py through --cfg-options, then our
    tools/test.py with --data-root; the optimizer's groups are the protocol's."""
    recipe, root = 'mask2former_coatnet0_ade20k.py', \
        real_layout_data / 'ade' / 'ADEChallengeData2016'
    paths = [f'{split}_dataloader.dataset.data_root={root}' for split in ('train', 'val', 'test')]
    result = run_recipe(library_tool('mmseg', 'train.py'), recipe, workdir,
                        '--work-dir', str(workdir / 'w'), '--cfg-options', *paths,
                        *schedule_and_size(recipe, 4))
    assert "custom_keys {'backbone'" in result.stdout + result.stderr
    checkpoint = workdir / 'w' / 'iter_2.pth'
    groups = safe_torch_load(str(checkpoint))['optimizer']['param_groups']
    # the backbone at lr x 0.1, the head at lr; weight decay 0.05 or none (norms, biases,
    # relative-position tables, the query and level embeddings)
    assert sorted({round(g['initial_lr'] / 1e-4, 6) for g in groups}) == [0.1, 1.0]
    assert {g['weight_decay'] for g in groups} == {0.05, 0.}
    assert {'decode.loss_cls', 'decode.loss_mask', 'decode.loss_dice'} \
        <= losses(workdir / 'w')[0].keys()
    run_recipe(TEST, recipe, workdir, str(checkpoint), '--work-dir', str(workdir / 't'),
               '--data-root', str(root), '--cfg-options', *schedule_and_size(recipe, 4))
    assert 'mIoU' in evaluation(workdir / 't')


@pytest.mark.slow
def test_mask2former_coco_recipe_trains_with_mmdets_own_tool_and_every_path_set(
        workdir, real_layout_data):
    """Mask2Former instance segmentation with large-scale jitter, through mmdet's own
    tools/train.py (every path set by --cfg-options), at 1/8 of its 1024x1024 size."""
    recipe, root = 'mask2former_coatnet1_lsj-50e_coco.py', str(real_layout_data / 'coco') + '/'
    paths = [f'{split}_dataloader.dataset.data_root={root}' for split in ('train', 'val', 'test')]
    paths += [f'{split}_evaluator.ann_file={root}annotations/instances_val2017.json'
              for split in ('val', 'test')]
    result = run_recipe(library_tool('mmdet', 'train.py'), recipe, workdir,
                        '--work-dir', str(workdir / 'w'), '--cfg-options', *paths,
                        *schedule_and_size(recipe, 8))
    assert {'loss_cls', 'loss_mask', 'loss_dice'} <= losses(workdir / 'w')[0].keys()
    assert 'Evaluating segm' in result.stdout + result.stderr  # the validation after training


def test_published_anchors_are_the_installed_metafiles():
    """published_results.json's DINO and Mask2Former rows are the figures of mmdet's and mmseg's
    own metafiles, as installed (tools/dev/published_from_metafiles.py reads them)."""
    result = run_tool('tools/dev/published_from_metafiles.py', '--check', check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.load(open(osp.join(ROOT, 'docs', 'results', 'published_results.json')))['results']
    anchors = {(r['protocol'], r['backbone']) for r in rows if r['source'].startswith('metafile:')}
    assert {('dino_12e', 'R-50'), ('mask2former_ade20k', 'Swin-B'),
            ('mask2former_coco', 'Swin-S')} <= anchors


@pytest.mark.parametrize('recipe, dataset', [
    ('dino-4scale_coatnet1_12e_coco.py', 'coco'),
    ('mask2former_coatnet1_ade20k.py', 'ade/ADEChallengeData2016'),
    ('mask2former_coatnet1_lsj-50e_coco.py', 'coco')])
def test_query_head_recipes_preflight_names_the_weights_to_fetch(tmp_path, real_layout_data,
                                                                 recipe, dataset):
    """From a folder without checkpoints/, on the datasets' standard layouts (COCO's instances only:
    mmdet's Mask2Former instance config keeps a panoptic folder it never reads), tools/train.py
    passes the data and stops before building, with the download and conversion commands."""
    result = run_tool(TRAIN, osp.join(ROOT, 'configs', recipe), '--work-dir', str(tmp_path / 'w'),
                      '--data-root', str(real_layout_data / dataset), check=False, cwd=tmp_path)
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    assert 'dataset not found' not in result.stderr
    assert 'checkpoints/coatnet_1_rw_224.sw_in1k.pth not found' in result.stderr
    assert 'hf download timm/coatnet_1_rw_224.sw_in1k' in result.stderr
    assert 'tools/model_converters/timm2mmcoatnet.py' in result.stderr
