"""The user-facing tools end to end, in subprocesses as a user runs them: toy data, train, resume,
test, draw predictions; the shipped configs; the preflight messages."""
import glob
import json
import math
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOY_DET = osp.join(ROOT, 'configs', 'toy', 'mask-rcnn_coatnet-pico_fpn_toy.py')
TOY_SEG = osp.join(ROOT, 'configs', 'toy', 'upernet_coatnet-pico_toy.py')
SHIPPED = sorted(glob.glob(osp.join(ROOT, 'configs', '*.py')) +
                 glob.glob(osp.join(ROOT, 'configs', 'toy', '*.py')))


def run_tool(*args, check=True, timeout=600, env=None):
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout, env=env)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope='module')
def toy_data(tmp_path_factory):
    out = tmp_path_factory.mktemp('toy_data')
    run_tool('tools/make_toy_data.py', '--out', str(out), '--num-train', '8', '--num-val', '4',
             '--size', '128')
    return out


def small_det_config(tmp_path, toy_data, epochs=1, extra=''):
    root = f'{toy_data}/toy_coco/'
    path = tmp_path / 'det.py'
    path.write_text(f'''
_base_ = [{TOY_DET!r}]
data_root = {root!r}
train_dataloader = dict(num_workers=1, persistent_workers=False, dataset=dict(data_root=data_root))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs={epochs}, val_interval={epochs})
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=5))
{extra}
''')
    return str(path)


def small_seg_config(tmp_path, toy_data, iters=4):
    root = f'{toy_data}/toy_ade'
    path = tmp_path / 'seg.py'
    path.write_text(f'''
_base_ = [{TOY_SEG!r}]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root={root!r}))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root={root!r}))
test_dataloader = val_dataloader
train_cfg = dict(max_iters={iters}, val_interval={iters})
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval={iters}))
''')
    return str(path)


def scalars(work_dir):
    """The training records (one per logged iteration) of a run's json log."""
    logs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    records = []
    for log in logs:
        with open(log) as f:
            records += [json.loads(line) for line in f if '"loss"' in line]
    return records


@pytest.mark.parametrize('config', SHIPPED, ids=lambda p: osp.relpath(p, ROOT))
def test_shipped_config_builds_its_full_model(config):
    cfg = Config.fromfile(config)
    scope = cfg.default_scope
    from mmengine.registry import init_default_scope
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    model = MODELS.build(cfg.model)
    assert type(model.backbone).__name__ == 'CoAtNet'
    assert cfg.custom_imports['imports'] == ['mmcoatnet']
    assert cfg.model.backbone.get('init_cfg') is None or \
        cfg.model.backbone.init_cfg.checkpoint.startswith('checkpoints/')
    if 'toy' not in config:
        assert cfg.optim_wrapper.optimizer.type == 'AdamW'


def test_toy_mask_rcnn_trains_tests_and_draws(tmp_path, toy_data):
    config = small_det_config(tmp_path, toy_data)
    work_dir = tmp_path / 'work'
    run_tool('tools/train.py', config, '--work-dir', str(work_dir))
    checkpoint = work_dir / 'epoch_1.pth'
    assert checkpoint.is_file()
    assert all(torch.isfinite(torch.tensor(r['loss'])) for r in scalars(str(work_dir)))
    result = run_tool('tools/test.py', config, str(checkpoint), '--work-dir', str(tmp_path / 'test'),
                      '--out', str(tmp_path / 'results.pkl'), '--show-dir', 'shown')
    metrics = json.loads(open(glob.glob(str(tmp_path / 'test' / '*' / '*.json'))[0]).read())
    assert {'coco/bbox_mAP', 'coco/segm_mAP'} <= set(metrics)
    assert all(-1 <= metrics[k] <= 1 for k in ('coco/bbox_mAP', 'coco/segm_mAP'))
    assert (tmp_path / 'results.pkl').is_file()
    assert glob.glob(str(tmp_path / 'test' / '*' / 'shown' / '*.jpg'))
    # mmdet's inference API, as draw_predictions uses it
    result = run_tool('tools/draw_predictions.py', config, str(checkpoint),
                      '--out', str(tmp_path / 'pictures'), '--num', '2', '--score-thr', '0')
    assert len(glob.glob(str(tmp_path / 'pictures' / '*.png'))) == 2, result.stdout


def test_inference_detector_api_with_a_trained_toy_checkpoint(tmp_path, toy_data):
    import mmcoatnet  # noqa: F401
    from mmdet.apis import inference_detector, init_detector
    config = small_det_config(tmp_path, toy_data)
    run_tool('tools/train.py', config, '--work-dir', str(tmp_path / 'work'))
    cfg = Config.fromfile(config)
    model = init_detector(cfg, str(tmp_path / 'work' / 'epoch_1.pth'), device='cpu')
    image = sorted(glob.glob(f'{toy_data}/toy_coco/val/*.jpg'))[0]
    result = inference_detector(model, image)
    assert result.pred_instances.bboxes.shape[-1] == 4
    assert model.dataset_meta['classes'] == ('circle', 'square', 'triangle')


def test_toy_upernet_trains_and_tests(tmp_path, toy_data):
    config = small_seg_config(tmp_path, toy_data)
    work_dir = tmp_path / 'work'
    run_tool('tools/train.py', config, '--work-dir', str(work_dir))
    checkpoint = work_dir / 'iter_4.pth'
    assert checkpoint.is_file()
    run_tool('tools/test.py', config, str(checkpoint), '--work-dir', str(tmp_path / 'test'))
    metrics = json.loads(open(glob.glob(str(tmp_path / 'test' / '*' / '*.json'))[0]).read())
    assert 0 <= metrics['mIoU'] <= 100
    result = run_tool('tools/draw_predictions.py', config, str(checkpoint),
                      '--out', str(tmp_path / 'pictures'), '--num', '2')
    assert len(glob.glob(str(tmp_path / 'pictures' / '*.png'))) == 2, result.stdout


def test_a_killed_run_resumes_with_the_same_losses(tmp_path, toy_data):
    config = small_det_config(tmp_path, toy_data, epochs=3)
    reference = tmp_path / 'reference'
    run_tool('tools/train.py', config, '--work-dir', str(reference))
    expected = {r['iter']: r['loss'] for r in scalars(str(reference))}

    killed = tmp_path / 'killed'
    process = subprocess.Popen([sys.executable, 'tools/train.py', config, '--work-dir', str(killed)],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    # mmengine writes last_checkpoint after the checkpoint file itself
    while not (killed / 'last_checkpoint').exists() and process.poll() is None \
            and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (killed / 'epoch_1.pth').exists()
    saved = open(killed / 'last_checkpoint').read().strip()
    saved_epoch = int(osp.basename(saved)[len('epoch_'):-len('.pth')])
    assert saved_epoch < 3, 'the run finished before it could be killed'

    run_tool('tools/train.py', config, '--work-dir', str(killed), '--resume')
    resumed = [r for r in scalars(str(killed)) if r['epoch'] > saved_epoch]
    assert resumed and resumed[0]['iter'] == saved_epoch * 2 + 1  # 2 iterations per epoch
    for record in resumed:
        assert record['loss'] == pytest.approx(expected[record['iter']], rel=1e-4, abs=1e-5), record
    state = torch.load(killed / 'epoch_3.pth', weights_only=False)
    assert state['meta']['epoch'] == 3 and state['optimizer']['state']


def test_missing_dataset_stops_before_building_the_model(tmp_path):
    config = tmp_path / 'nodata.py'
    config.write_text(f'_base_ = [{TOY_DET!r}]\n'
                      "train_dataloader = dict(dataset=dict(data_root='/nonexistent/coco/'))\n")
    result = run_tool('tools/train.py', str(config), '--work-dir', str(tmp_path / 'w'), check=False)
    assert result.returncode != 0
    assert 'dataset not found' in result.stderr and '/nonexistent/coco/annotations' in result.stderr
    assert 'Datasets' in result.stderr and 'Traceback' not in result.stderr


def test_missing_pretrained_checkpoint_names_the_conversion_command(tmp_path, toy_data):
    config = small_det_config(tmp_path, toy_data, extra=(
        "model = dict(backbone=dict(init_cfg=dict(_delete_=True, type='Pretrained', "
        "checkpoint='checkpoints/coatnet_0_rw_224.sw_in1k.pth')))"))
    result = run_tool('tools/train.py', config, '--work-dir', str(tmp_path / 'w'), check=False)
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    assert 'checkpoints/coatnet_0_rw_224.sw_in1k.pth not found' in result.stderr
    assert 'tools/model_converters/timm2mmcoatnet.py' in result.stderr


def test_amp_without_a_gpu_is_refused_clearly(tmp_path):
    no_gpu = dict(os.environ, CUDA_VISIBLE_DEVICES='')  # the CPU answer, on any machine
    result = run_tool('tools/train.py', TOY_DET, '--work-dir', str(tmp_path / 'w'), '--amp',
                      check=False, env=no_gpu)
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    assert '--amp needs a GPU' in result.stderr


@pytest.mark.parametrize('config, shape', [(TOY_DET, ('128', '160')), (TOY_SEG, ('96', '128'))])
def test_train_memory_runs_a_configs_whole_model_on_a_synthetic_batch(tmp_path, config, shape):
    out = tmp_path / 'memory.json'
    result = run_tool('tools/analysis_tools/train_memory.py', config, '--shape', *shape,
                      '--batch', '2', '--iters', '2', '--out', str(out),
                      '--cfg-options', 'model.backbone.with_cp=True')
    report = json.loads(out.read_text())
    assert report['cfg_options'] == {'model.backbone.with_cp': True}
    assert report['shape'] == [int(s) for s in shape] and report['batch'] == 2
    assert report['device'] == 'cpu' and report['peak_rss_bytes'] > 0 and report['seconds'] > 0
    assert len(report['losses']) == 2 and all(math.isfinite(loss) for loss in report['losses'])
    assert report['freed_memory_returned']  # glibc here: the peak is the live one
    assert 'GiB (RSS growth; freed memory returned at once)' in result.stdout
    no_gpu = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    refused = run_tool('tools/analysis_tools/train_memory.py', config, '--amp', check=False,
                       env=no_gpu)
    assert refused.returncode != 0 and '--amp needs a GPU' in refused.stderr


def test_benchmark_measures_each_case_in_its_own_process_and_writes_reports(tmp_path):
    out = tmp_path / 'bench'
    result = run_tool('tools/analysis_tools/benchmark.py', '--arch', 'coatnet-pico',
                      '--sizes', '64', '80x112', '--impls', 'mmcoatnet', 'mmcoatnet-windowed',
                      'plain-reference', 'swin-t', 'timm', '--min-repeats', '1', '--max-repeats',
                      '1', '--min-seconds', '0', '--global-blocks', '1', '--out-dir', str(out))
    assert 'skipping timm: coatnet-pico has no timm counterpart' in result.stdout
    report = json.loads((out / 'benchmark.json').read_text())
    assert report['window_global_blocks'] == [1]
    rows = report['results']
    assert len(rows) == 2 * 2 * 4 and not [r for r in rows if 'error' in r]
    assert {(r['impl'], tuple(r['size']), r['mode']) for r in rows} == {
        (impl, size, mode) for impl in ('mmcoatnet', 'mmcoatnet-windowed', 'plain-reference', 'swin-t')
        for size in ((64, 64), (80, 112)) for mode in ('inference', 'train')}
    for row in rows:
        assert row['seconds'] > 0 and row['peak_memory_bytes'] > 0 and row['gflops'] > 0
        assert row['times'] and row['matmul_fraction'] > 0
    by_key = {(r['impl'], tuple(r['size']), r['mode']): r for r in rows}
    # FLOPs grow with the input; a training step counts three forwards
    ours = [by_key[('mmcoatnet', size, 'inference')]['gflops'] for size in ((64, 64), (80, 112))]
    assert ours[1] > ours[0]
    train = by_key[('mmcoatnet', (64, 64), 'train')]['gflops']
    assert train == pytest.approx(3 * ours[0])
    assert by_key[('swin-t', (64, 64), 'inference')]['params'] > 20e6  # Swin-T, not a toy
    # the same weights and input give the same maps in every attention implementation
    agreement = report['agreement']
    assert agreement['reference'] == 'plain-reference'
    assert set(agreement['max_abs_diff']) == {'mmcoatnet', 'mmcoatnet-windowed'}
    assert agreement['max_abs_diff']['mmcoatnet'] < 1e-4
    assert report['machine']['matmul_gflops'] > 0
    table = (out / 'benchmark.md').read_text()
    assert table.count('| inference |') == 8 and table.count('| train |') == 8
