"""ImageNet pre-training through mmpretrain: the paper's recipes (configs/imagenet/) build their
whole classifiers and state the paper's values; each runs a training step of its own pipeline on
the toy classification set through tools/train.py; the toy pre-training config learns; timm's
evaluation configs reproduce timm's evaluation transform and logits; a missing ImageNet stops the
tools before anything is built."""
import copy
import glob
import json
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from helpers import TOY_CLS, run_tool

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
IMAGENET = osp.join(ROOT, 'configs', 'imagenet')
RECIPES_224 = {n: osp.join(IMAGENET, f'coatnet{n}_in1k-224.py') for n in range(5)}
FINETUNE_384 = osp.join(IMAGENET, 'coatnet1_in1k-384.py')
TIMM_EVAL = {n: osp.join(IMAGENET, f'coatnet{n}-rw_timm_in1k-224.py') for n in range(3)}
ALL_IMAGENET = sorted(glob.glob(osp.join(IMAGENET, '*.py')))
MMPRETRAIN_TOOLS = osp.join(osp.dirname(__import__('mmpretrain').__file__), '.mim', 'tools')

# Table 10 of the paper (arXiv 2106.04803, appendix A.2); CoAtNet-4: see its config.
PAPER_DROP_PATH = {0: 0.2, 1: 0.3, 2: 0.5, 3: 0.7, 4: 0.7}
S4_WIDTH = {0: 768, 1: 768, 2: 1024, 3: 1536, 4: 1536}
# The toy pre-training config from scratch on the toy set (300 training, 60 validation images per
# class): 62.2% top-1 measured on the 2-core CPU machine (chance: 33.3%, one sigma 3.5 points
# over 180 images); the threshold leaves 12 points for other machines' numerics.
TOY_MIN_TOP1 = 50.0


def build_classifier(cfg):
    """The config's whole classifier, built as mmengine's Runner builds it."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import mmcoatnet.models.cls_head  # noqa: F401  (registers CoAtNetClsHead)
    init_default_scope(cfg.default_scope)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.setdefault('data_preprocessor', copy.deepcopy(cfg.get('data_preprocessor')))
    return MODELS.build(model_cfg)


def transform(pipeline, kind):
    return [t for t in pipeline if t['type'] == kind]


# ------------------------------------------------------------------------ the configs and models

@pytest.mark.parametrize('config', ALL_IMAGENET + [TOY_CLS], ids=osp.basename)
def test_pretraining_config_builds_its_full_classifier(config):
    cfg = Config.fromfile(config)
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.custom_imports['imports'] == ['mmcoatnet', 'mmcoatnet.models.cls_head']
    model = build_classifier(cfg)
    assert type(model).__name__ == 'ImageClassifier' and model.neck is None
    assert type(model.backbone).__name__ == 'CoAtNet'
    assert type(model.head).__name__ == 'CoAtNetClsHead'
    assert model.backbone.arch_name == cfg.model.backbone.arch
    size = 384 if '384' in config else 64 if config == TOY_CLS else 224
    assert model.backbone.pretrain_img_size == (size, size)
    timm_eval = config in TIMM_EVAL.values()
    assert model.head.final_norm == ('LN' if timm_eval else None)  # timm's head / the paper's
    model.eval()
    with torch.no_grad():  # the head reads the backbone's last map at its width
        logits = model(torch.randn(1, 3, 64, 64), mode='tensor')
    assert logits.shape == (1, cfg.model.head.num_classes) and torch.isfinite(logits).all()


@pytest.mark.parametrize('n', sorted(RECIPES_224))
def test_224_recipe_states_the_papers_values(n):
    cfg = Config.fromfile(RECIPES_224[n])
    assert cfg.model.backbone.arch == f'coatnet-{n}'
    assert cfg.model.backbone.drop_path_rate == PAPER_DROP_PATH[n]
    assert cfg.model.head.in_channels == S4_WIDTH[n] and cfg.model.head.num_classes == 1000
    assert cfg.model.head.loss == dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                                       mode='original')
    assert cfg.model.train_cfg.augments == [dict(type='Mixup', alpha=0.8)]  # no CutMix in Table 10
    assert cfg.train_cfg.max_epochs == 300
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'AdamW' and optimizer.weight_decay == 0.05
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=1.0)
    # 8 GPUs x 128 = 1024 per step, the lr the paper's 1e-3 at 4096 scaled to it
    total = 8 * cfg.train_dataloader.batch_size
    assert total == cfg.auto_scale_lr.base_batch_size == 1024
    assert optimizer.lr == pytest.approx(1e-3 * total / 4096)
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and warmup.end == 32  # 10K steps of 4096 images
    assert cosine.type == 'CosineAnnealingLR' and cosine.begin == 32 and cosine.end == 300
    assert cosine.eta_min_ratio == pytest.approx(1e-5 / 1e-3)
    train = cfg.train_dataloader.dataset.pipeline
    rand_augment, = transform(train, 'RandAugment')
    assert rand_augment.num_policies == 2  # 2, 15: level 15 clips to the top, as in timm
    assert rand_augment.magnitude_level == rand_augment.total_level
    assert transform(train, 'RandomResizedCrop')[0].scale == 224
    assert not transform(train, 'RandomErasing')
    test = cfg.val_dataloader.dataset.pipeline  # "center crop": 224 of 256
    assert transform(test, 'ResizeEdge')[0].scale == 256
    assert transform(test, 'CenterCrop')[0].crop_size == 224


def test_384_finetuning_states_the_papers_values():
    cfg = Config.fromfile(FINETUNE_384)
    backbone, head = cfg.model.backbone, cfg.model.head
    assert backbone.arch == 'coatnet-1' and backbone.drop_path_rate == 0.3
    assert backbone.pretrain_img_size == 384
    checkpoint = 'checkpoints/coatnet1_in1k-224.pth'
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=checkpoint)
    assert head.init_cfg == dict(type='Pretrained', checkpoint=checkpoint, prefix='head.')
    assert cfg.train_cfg.max_epochs == 30
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'AdamW' and optimizer.lr == 5e-5 and optimizer.weight_decay == 1e-8
    assert cfg.param_scheduler == []  # constant: peak = minimum, no warm-up
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=1.0)
    assert 8 * cfg.train_dataloader.batch_size == cfg.auto_scale_lr.base_batch_size == 512
    ema, = [h for h in cfg.custom_hooks if h.type == 'EMAHook']
    assert ema.momentum == pytest.approx(1 - 0.9999)
    assert cfg.model.train_cfg.augments == [dict(type='Mixup', alpha=0.8)]
    assert transform(cfg.train_dataloader.dataset.pipeline, 'RandomResizedCrop')[0].scale == 384
    test = cfg.val_dataloader.dataset.pipeline  # no center crop: the whole image at 384x384
    assert transform(test, 'Resize')[0].scale == 384 and not transform(test, 'CenterCrop')


def test_no_weight_decay_on_tables_norms_biases_and_layer_scale():
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(RECIPES_224[0])
    # a small architecture with LayerScale, so that every kind of parameter is there
    cfg.model.backbone.arch = dict(depths=(1, 1, 1, 1), channels=(16, 32, 64, 64),
                                   stem_channels=(8, 16), transformer=dict(layer_scale=1e-6))
    cfg.model.head.in_channels = 64
    model = build_classifier(cfg)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): name for name, p in model.named_parameters()}
    decayed = {names[id(p)] for group in wrapper.optimizer.param_groups if group['weight_decay']
               for p in group['params']}
    assert decayed and all(model.get_parameter(name).dim() >= 2 for name in decayed)
    undecayed = {n for n in names.values() if n not in decayed}
    assert any(n.endswith('rel_pos.table') for n in undecayed)
    assert any(n.endswith('.gamma') for n in undecayed)
    assert not [n for n in decayed if 'rel_pos' in n or n.endswith(('.gamma', '.bias'))]
    assert not [n for n, m in model.named_modules()
                if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm))
                and f'{n}.weight' in decayed]


# ------------------------------------------------------------- training steps on the toy set

def at_toy_size(pipeline, size=64):
    """A recipe's transforms at the toy image size: crops and resizes scaled from 224 / 384."""
    out = []
    for t in pipeline:
        t = t.to_dict()
        if t['type'] in ('RandomResizedCrop', 'Resize'):
            t['scale'] = size
        elif t['type'] == 'ResizeEdge':
            t['scale'] = round(size * t['scale'] / 224)
        elif t['type'] == 'CenterCrop':
            t['crop_size'] = size
        out.append(t)
    return out


def toy_recipe(tmp_path, recipe, toy_root, name, extra=''):
    """``recipe`` on the toy set: its own transforms at 64x64, one step of two images per epoch,
    one epoch, validation on two images."""
    cfg = Config.fromfile(recipe)
    train = at_toy_size(cfg.train_dataloader.dataset.pipeline)
    val = at_toy_size(cfg.val_dataloader.dataset.pipeline)
    path = tmp_path / f'{name}.py'
    path.write_text(f'''
_base_ = [{recipe!r}]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(
    _delete_=True, type='CustomDataset', data_root={toy_root!r}, data_prefix='train', indices=2,
    pipeline={train!r}))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(
    _delete_=True, type='CustomDataset', data_root={toy_root!r}, data_prefix='val', indices=2,
    pipeline={val!r}))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1))
{extra}
''')
    return str(path)


def train_records(work_dir):
    logs = glob.glob(osp.join(str(work_dir), '*', 'vis_data', 'scalars.json'))
    assert len(logs) == 1, logs
    with open(logs[0]) as f:
        records = [json.loads(line) for line in f]
    return [r for r in records if 'loss' in r], [r for r in records if 'accuracy/top1' in r]


SMALL = "model = dict(backbone=dict(arch='coatnet-pico'), head=dict(in_channels=256))"


@pytest.mark.parametrize('n', sorted(RECIPES_224))
def test_224_recipe_trains_a_step_on_the_toy_set(tmp_path, toy_cls, n):
    # CoAtNet-0 at its real size; the others share its base, with a small architecture
    extra = '' if n == 0 else SMALL
    config = toy_recipe(tmp_path, RECIPES_224[n], toy_cls, f'coatnet{n}', extra)
    work_dir = tmp_path / 'work'
    run_tool('tools/train.py', config, '--work-dir', str(work_dir))
    (step,), (val,) = train_records(work_dir)
    assert math.isfinite(step['loss']) and 'accuracy/top1' in val
    assert (work_dir / 'epoch_1.pth').is_file()


@pytest.mark.slow
def test_384_finetuning_starts_from_a_224_checkpoint(tmp_path, toy_cls):
    """The 224 recipe's checkpoint initialises the 384 fine-tuning: backbone (its tables resized to
    384 by the adapter) and classifier both; a step then moves them by at most the small lr."""
    # different seeds: a head left at its initialisation could not pass for the loaded one
    pretrain = toy_recipe(tmp_path, RECIPES_224[1], toy_cls, 'pretrain',
                          SMALL + '\nrandomness = dict(seed=1)')
    run_tool('tools/train.py', pretrain, '--work-dir', str(tmp_path / 'pretrain'))
    checkpoint = str(tmp_path / 'pretrain' / 'epoch_1.pth')
    finetune = toy_recipe(tmp_path, FINETUNE_384, toy_cls, 'finetune', f'''
pretrained = {checkpoint!r}
model = dict(backbone=dict(arch='coatnet-pico', init_cfg=dict(checkpoint=pretrained)),
             head=dict(in_channels=256, init_cfg=dict(checkpoint=pretrained)))
randomness = dict(seed=2)
''')
    result = run_tool('tools/train.py', finetune, '--work-dir', str(tmp_path / 'finetune'))
    assert 'bias tables resized' in result.stdout + result.stderr
    before = torch.load(checkpoint, map_location='cpu', weights_only=False)['state_dict']
    after = torch.load(tmp_path / 'finetune' / 'epoch_1.pth', map_location='cpu',
                       weights_only=False)['state_dict']
    for key in ('head.fc.weight', 'backbone.stem.conv1.weight'):
        # one AdamW step at 5e-5 moves a weight by about 5e-5; a fresh initialisation by ~1e-2
        assert (after[key] - before[key]).abs().max() < 1e-3, key
    table = 'backbone.stages.2.blocks.0.attn.rel_pos.table'
    assert before[table].shape[-1] == 2 * (224 // 16) - 1
    assert after[table].shape[-1] == 2 * (384 // 16) - 1


def test_toy_config_runs_under_mmpretrains_own_train_tool(tmp_path, toy_cls):
    config = tmp_path / 'toy.py'
    config.write_text(f'''
_base_ = [{TOY_CLS!r}]
train_dataloader = dict(num_workers=0, persistent_workers=False, batch_size=4,
                        dataset=dict(data_root={toy_cls!r}, indices=4))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root={toy_cls!r}, indices=4))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1, val_interval=1)
''')
    work_dir = tmp_path / 'work'
    run_tool(osp.join(MMPRETRAIN_TOOLS, 'train.py'), str(config), '--work-dir', str(work_dir))
    (step,), (val,) = train_records(work_dir)
    assert math.isfinite(step['loss']) and 'accuracy/top1' in val


@pytest.mark.slow
def test_toy_pretraining_beats_chance(toy_pretraining):
    steps, vals = train_records(toy_pretraining)
    assert steps and all(math.isfinite(r['loss']) for r in steps)
    top1 = vals[-1]['accuracy/top1']
    assert top1 >= TOY_MIN_TOP1, [r['accuracy/top1'] for r in vals]


TRANSFER = osp.join(ROOT, 'configs', 'toy', 'transfer')


@pytest.mark.slow
@pytest.mark.parametrize('name, scope', [('maskrcnn_coatnet-pico_toy-finetune.py', 'mmdet'),
                                         ('upernet_coatnet-pico_toy-finetune.py', 'mmseg')])
def test_fine_tuning_configs_start_from_the_classification_checkpoint(toy_pretraining, name,
                                                                      scope):
    """make demo-transfer's fine-tuning configs: the detector's or segmentor's backbone is the
    classifier's, tensor for tensor (the bias tables kept at the 64x64 pre-training size)."""
    import importlib

    from mmengine.registry import init_default_scope

    import mmcoatnet  # noqa: F401  (registers CoAtNet and the checkpoint adapter)
    with open(osp.join(toy_pretraining, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    cfg = Config.fromfile(osp.join(TRANSFER, name))
    cfg.merge_from_dict({'model.backbone.init_cfg.checkpoint': checkpoint})
    init_default_scope(scope)
    importlib.import_module(f'{scope}.models')
    model = importlib.import_module(f'{scope}.registry').MODELS.build(cfg.model)
    model.init_weights()
    from mmcoatnet.checkpoint import read_checkpoint, unwrap_state_dict
    pretrained = unwrap_state_dict(read_checkpoint(checkpoint), prefix='backbone.')
    own = model.backbone.state_dict()
    assert set(own) == set(pretrained)
    for key, value in own.items():
        assert torch.equal(value, pretrained[key]), key


def test_transfer_report_finds_where_the_pretrained_run_overtakes(tmp_path):
    """transfer_report.py: each run's final metric, and the first step at which the pre-trained
    run reaches the scratch run's final value."""
    def write_run(name, records):
        run = tmp_path / name / '20260101_000000' / 'vis_data'
        run.mkdir(parents=True)
        (run / 'scalars.json').write_text(''.join(json.dumps(r) + '\n' for r in records))

    write_run('seg_scratch', [dict(step=100, mIoU=20.0), dict(step=200, mIoU=30.0)])
    write_run('seg_pretrained', [dict(step=100, mIoU=31.0), dict(step=200, mIoU=40.0)])
    box = 'coco/bbox_mAP'
    write_run('det_scratch', [{'step': 1, box: 0.2}, {'step': 2, box: 0.3}])
    write_run('det_pretrained', [{'step': 1, box: 0.1}, {'step': 2, box: 0.25}])
    write_run('pretrain', [dict(step=4, **{'accuracy/top1': 61.0})])
    out = tmp_path / 'report.json'
    printed = run_tool('tools/analysis_tools/transfer_report.py', str(tmp_path), '--out', str(out))
    report = json.loads(out.read_text())
    rows = {row['metric']: row for row in report['rows']}
    assert rows['mIoU']['pretrained_reaches_scratch_final_at'] == 100
    assert rows['mIoU']['fraction_of_budget'] == 0.5
    assert rows[box]['pretrained_reaches_scratch_final_at'] is None
    assert report['pretraining_top1'] == 61.0
    assert 'not within the budget' in printed.stdout


# ------------------------------------------------------------------ timm's evaluation configs

def config_pipeline_input(cfg, path):
    """An image through the config's test pipeline and data preprocessor: the model's input."""
    from mmcv.transforms import Compose
    from mmengine.registry import init_default_scope
    from mmpretrain.models import ClsDataPreprocessor
    init_default_scope('mmpretrain')
    packed = Compose(cfg.test_dataloader.dataset.pipeline)(dict(img_path=path))
    preprocessor = ClsDataPreprocessor(**{k: v for k, v in cfg.data_preprocessor.items()
                                          if k != 'num_classes'})
    return preprocessor(dict(inputs=[packed['inputs']], data_samples=[packed['data_samples']]))[
        'inputs']


@pytest.fixture(scope='module')
def odd_sized_images(tmp_path_factory, toy_cls):
    """Toy images resized to sides that exercise the resize's rounding and the crop's centre."""
    import cv2
    out = tmp_path_factory.mktemp('odd_sized')
    paths = []
    for index, (h, w) in enumerate([(300, 260), (233, 411), (224, 224)]):
        image = cv2.imread(sorted(glob.glob(f'{toy_cls}/val/*/*.png'))[index * 50])
        path = str(out / f'{index}.png')
        cv2.imwrite(path, cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC))
        paths.append(path)
    return paths


@pytest.mark.parametrize('n', sorted(TIMM_EVAL))
def test_timm_eval_pipeline_is_timms_transform(n, odd_sized_images):
    import timm
    from PIL import Image
    cfg = Config.fromfile(TIMM_EVAL[n])
    timm_name = osp.basename(cfg.load_from)[:-len('_cls.pth')]  # model.tag, as timm names it
    pretrained_cfg = timm.models.get_pretrained_cfg(timm_name).to_dict()
    timm_transform = timm.data.create_transform(
        **timm.data.resolve_data_config({}, pretrained_cfg=pretrained_cfg))
    for path in odd_sized_images:
        expected = timm_transform(Image.open(path).convert('RGB')).unsqueeze(0)
        ours = config_pipeline_input(cfg, path)
        assert ours.shape == expected.shape == (1, 3, 224, 224)
        # the same PIL resize and crop; the normalisation differs in float rounding only
        assert (ours - expected).abs().max() < 1e-5, path


def test_timm_classifier_converted_with_its_head_gives_timms_logits(tmp_path, odd_sized_images):
    """coatnet_0_rw_224 (random weights, timm's layout), converted with --keep-head, loaded by the
    evaluation config: the config's pipeline and model give timm's logits on timm's transform."""
    import timm
    from mmengine.runner import load_checkpoint
    from PIL import Image
    from safetensors.torch import save_file
    torch.manual_seed(0)
    reference = timm.create_model('coatnet_0_rw_224').eval()
    with torch.no_grad():  # norms and tables away from their initial values
        for name, tensor in reference.state_dict().items():
            if tensor.is_floating_point() and ('norm' in name or 'relative_position' in name):
                tensor.add_(torch.randn_like(tensor) * 0.1)
    source, converted = tmp_path / 'timm.safetensors', tmp_path / 'converted.pth'
    save_file({k: v.clone() for k, v in reference.state_dict().items()}, str(source))
    run_tool('tools/model_converters/timm2mmcoatnet.py', str(source), str(converted),
             '--keep-head')
    cfg = Config.fromfile(TIMM_EVAL[0])
    model = build_classifier(cfg).eval()
    load_checkpoint(model, str(converted), map_location='cpu', strict=True)
    transform = timm.data.create_transform(
        **timm.data.resolve_data_config({}, model=reference))
    path = odd_sized_images[1]
    with torch.no_grad():
        expected = reference(transform(Image.open(path).convert('RGB')).unsqueeze(0))
        ours = model(config_pipeline_input(cfg, path), mode='tensor')
    assert expected.std() > 0.1  # logits that tell classes apart, not a constant
    assert (ours - expected).abs().max() < 1e-5  # float rounding only (measured: 4e-7)


@pytest.mark.parametrize('tool', ['tools/test.py', osp.join(MMPRETRAIN_TOOLS, 'test.py')],
                         ids=['ours', 'mmpretrain'])
def test_timm_eval_config_evaluates_under_the_test_tools(tmp_path, toy_cls, tool):
    cfg = Config.fromfile(TIMM_EVAL[0])
    checkpoint = tmp_path / 'model.pth'
    torch.save(dict(state_dict=build_classifier(cfg).state_dict()), checkpoint)
    config = tmp_path / 'eval.py'  # three toy images through the config's own pipeline
    config.write_text(f'''
_base_ = [{TIMM_EVAL[0]!r}]
test_dataloader = dict(batch_size=3, num_workers=0, persistent_workers=False, dataset=dict(
    _delete_=True, type='CustomDataset', data_root={toy_cls!r}, data_prefix='val', indices=3,
    pipeline={{{{_base_.test_pipeline}}}}))
''')
    work_dir = tmp_path / 'work'
    run_tool(tool, str(config), str(checkpoint), '--work-dir', str(work_dir))
    metrics, = glob.glob(str(work_dir / '*' / '*.json'))
    with open(metrics) as f:
        result = json.load(f)
    # three images scored: each top-1 hit is a third; top-5 finds at least what top-1 finds
    assert round(result['accuracy/top1'] * 3 / 100, 6) in (0, 1, 2, 3)
    assert result['accuracy/top5'] >= result['accuracy/top1']


# ---------------------------------------------------------------------------------- preflight

def test_missing_imagenet_stops_before_building_the_model(tmp_path):
    roots = [f'{split}_dataloader.dataset.data_root=/nonexistent/imagenet'
             for split in ('train', 'val', 'test')]
    result = run_tool('tools/train.py', RECIPES_224[4], '--work-dir', str(tmp_path / 'w'),
                      '--cfg-options', *roots, check=False, timeout=120)
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    assert 'dataset not found' in result.stderr and '/nonexistent/imagenet/train' in result.stderr
    assert 'Datasets' in result.stderr and 'configs/toy/coatnet-pico_toy-cls.py' in result.stderr
    assert not (tmp_path / 'w').exists()  # stopped before the runner made its work dir


def test_missing_imagenet_stops_evaluation_before_building(tmp_path):
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')  # never read: the data check comes first
    result = run_tool('tools/test.py', TIMM_EVAL[0], str(checkpoint),
                      '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                      'test_dataloader.dataset.data_root=/nonexistent/imagenet',
                      check=False, timeout=120)
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    assert 'dataset not found' in result.stderr and '/nonexistent/imagenet/val' in result.stderr
