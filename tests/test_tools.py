"""The user-facing tools end to end, in subprocesses as a user runs them: toy data, train, resume,
test, draw predictions; the shipped configs; the preflight messages."""
import concurrent.futures
import glob
import json
import math
import os
import os.path as osp
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config

from helpers import (
    ROOT,
    TOOL_ENV,
    TOY_DET,
    TOY_SEG,
    assert_loss_fell,
    logged_runs,
    read_test_metrics,
    run_tool,
    scalars,
    small_det_config,
)

SHIPPED = sorted(glob.glob(osp.join(ROOT, 'configs', '*.py')) +
                 glob.glob(osp.join(ROOT, 'configs', 'toy', '*.py')))


@pytest.mark.parametrize('config', SHIPPED, ids=lambda p: osp.relpath(p, ROOT))
def test_shipped_config_builds_its_full_model(config):
    cfg = Config.fromfile(config)
    scope = cfg.default_scope
    from mmengine.registry import init_default_scope
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    elif scope == 'mmseg':
        from mmseg.registry import MODELS
    else:
        from mmpretrain.registry import MODELS
    model = MODELS.build(cfg.model)
    assert type(model.backbone).__name__ == 'CoAtNet'
    assert cfg.custom_imports['imports'][0] == 'mmcoatnet'
    assert cfg.model.backbone.get('init_cfg') is None or \
        cfg.model.backbone.init_cfg.checkpoint.startswith('checkpoints/')
    if 'toy' not in config:
        assert cfg.optim_wrapper.optimizer.type == 'AdamW'



# The folder of tools/make_toy_data.py's output each library's toy configs read (data/<folder>)
TOY_LAYOUT = {'mmdet': 'toy_coco', 'mmseg': 'toy_ade'}
TOY_DET_SEG = [c for c in SHIPPED if '/toy/' in c and not c.endswith('-cls.py')]


@pytest.mark.parametrize('config', TOY_DET_SEG, ids=lambda p: osp.relpath(p, ROOT))
def test_toy_config_reads_the_files_make_toy_data_writes(config, toy_data):
    from mmcoatnet.utils.data_root import set_data_root
    from mmcoatnet.utils.preflight import missing_data_paths
    cfg = Config.fromfile(config)
    layout = TOY_LAYOUT[cfg.default_scope]
    assert cfg.train_dataloader.dataset.data_root.rstrip('/') == f'data/{layout}'
    set_data_root(cfg, f'{toy_data}/{layout}')  # as --data-root does
    assert missing_data_paths(cfg) == []

# Learning runs: the toy models overfit the fixture's 8 training images and are scored on them.
# Measured on the 2-core CPU (fixed seed; 2 threads, and 1 thread in brackets): Mask R-CNN
# untrained (the same run with lr=0) bbox/segm mAP 0.002/0.000, after 30 epochs (60 iterations)
# 0.166/0.127 (0.125/0.098); UperNet untrained mIoU 22.3 (background only), after 100 iterations
# 61.0 (66.0). The thresholds sit far above untrained and well below trained.
DET_MIN_BBOX_MAP = 0.05
DET_MIN_SEGM_MAP = 0.04
SEG_MIN_MIOU = 45.0


@pytest.mark.slow
def test_toy_mask_rcnn_trains_tests_and_draws(tmp_path, trained_det):
    config, work_dir, checkpoint = trained_det
    assert checkpoint.is_file()
    assert_loss_fell(scalars(str(work_dir)))
    run_tool('tools/test.py', config, str(checkpoint), '--work-dir', str(tmp_path / 'test'),
             '--out', str(tmp_path / 'results.pkl'), '--show-dir', 'shown')
    metrics = read_test_metrics(tmp_path / 'test')
    assert metrics['coco/bbox_mAP'] >= DET_MIN_BBOX_MAP, metrics
    assert metrics['coco/segm_mAP'] >= DET_MIN_SEGM_MAP, metrics
    results = pickle.load(open(tmp_path / 'results.pkl', 'rb'))
    assert len(results) == 8 and all('pred_instances' in r for r in results)  # one per image
    assert len(glob.glob(str(tmp_path / 'test' / '*' / 'shown' / '*.jpg'))) == 8
    # mmdet's inference API, as draw_predictions uses it
    result = run_tool('tools/draw_predictions.py', config, str(checkpoint),
                      '--out', str(tmp_path / 'pictures'), '--num', '2', '--score-thr', '0')
    assert len(glob.glob(str(tmp_path / 'pictures' / '*.png'))) == 2, result.stdout


def box_iou(a, b):
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


@pytest.mark.slow
def test_inference_detector_api_with_a_trained_toy_checkpoint(toy_data, trained_det):
    from mmdet.apis import inference_detector, init_detector

    import mmcoatnet  # noqa: F401
    config, _, checkpoint = trained_det
    model = init_detector(Config.fromfile(config), str(checkpoint), device='cpu')
    assert model.dataset_meta['classes'] == ('circle', 'square', 'triangle')
    coco = json.load(open(f'{toy_data}/toy_coco/annotations/instances_train.json'))
    hits = 0
    for image in coco['images']:
        result = inference_detector(model, f'{toy_data}/toy_coco/train/{image["file_name"]}')
        predicted = result.pred_instances
        assert predicted.bboxes.shape[-1] == 4
        if not len(predicted):
            continue
        truth = [a for a in coco['annotations'] if a['image_id'] == image['id']]
        gt_boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in truth)])
        best = int(predicted.scores.argmax())
        overlaps = box_iou(predicted.bboxes[best:best + 1], gt_boxes)[0]
        match = int(overlaps.argmax())
        hits += bool(overlaps[match] > 0.5 and
                     int(predicted.labels[best]) == truth[match]['category_id'] - 1)
    # the best detection is one of the image's objects, with its class: measured on 5 of the 8
    # learned images, on none with the untrained model
    assert hits >= 3, hits


@pytest.mark.slow
def test_toy_upernet_trains_and_tests(tmp_path, trained_seg):
    config, work_dir, checkpoint = trained_seg
    assert checkpoint.is_file()
    assert_loss_fell(scalars(str(work_dir)))
    run_tool('tools/test.py', config, str(checkpoint), '--work-dir', str(tmp_path / 'test'))
    metrics = read_test_metrics(tmp_path / 'test')
    assert metrics['mIoU'] >= SEG_MIN_MIOU, metrics
    result = run_tool('tools/draw_predictions.py', config, str(checkpoint),
                      '--out', str(tmp_path / 'pictures'), '--num', '2')
    assert len(glob.glob(str(tmp_path / 'pictures' / '*.png'))) == 2, result.stdout


@pytest.mark.slow
def test_a_killed_run_resumes_with_the_same_losses(tmp_path, toy_data):
    # 8 images in batches of 2: 4 iterations per epoch, so the run can be killed inside an epoch
    per_epoch, epochs = 4, 2
    config = small_det_config(tmp_path, toy_data, epochs=epochs, batch_size=2)
    reference = tmp_path / 'reference'
    run_tool('tools/train.py', config, '--work-dir', str(reference))
    expected = {r['iter']: r['loss'] for r in scalars(str(reference))}
    assert sorted(expected) == list(range(1, per_epoch * epochs + 1))

    killed = tmp_path / 'killed'
    # its own process group, so that the kill takes its data-loader worker too (an orphaned worker
    # would be left behind)
    process = subprocess.Popen(
        [sys.executable, 'tools/train.py', config, '--work-dir', str(killed)], cwd=ROOT,
        env=TOOL_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # kill once epoch_1.pth is saved and 2 of epoch 2's 4 iterations are logged (2 to spare)
        deadline = time.time() + 300
        while process.poll() is None and time.time() < deadline and not any(
                r['iter'] >= per_epoch + 2 for run in logged_runs(killed) for r in run):
            time.sleep(0.05)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:  # the whole group had ended
            pass
        process.wait()
    logged = [r['iter'] for run in logged_runs(killed) for r in run]
    assert max(logged) > per_epoch + 1, 'the run ended before epoch 2 was under way'
    assert max(logged) < per_epoch * epochs and not (killed / 'epoch_2.pth').exists(), \
        'the kill came too late: epoch 2 was finished'
    assert open(killed / 'last_checkpoint').read().strip().endswith('epoch_1.pth')

    run_tool('tools/train.py', config, '--work-dir', str(killed), '--resume')
    resumed = logged_runs(killed)[-1]
    # mmengine resumes from the epoch's start: the killed iterations 5.. are run again
    assert [r['iter'] for r in resumed] == list(range(per_epoch + 1, per_epoch * epochs + 1))
    # the same computation on the same CPU: equal to float32 rounding, far below what a different
    # RoI sample changes (the control below)
    for record in resumed:
        assert record['loss'] == pytest.approx(expected[record['iter']], rel=1e-6), record
    state = torch.load(killed / 'epoch_2.pth', weights_only=False)
    assert state['meta']['epoch'] == 2 and state['optimizer']['state']
    final = torch.load(reference / 'epoch_2.pth', weights_only=False)['state_dict']
    for key, value in final.items():
        torch.testing.assert_close(state['state_dict'][key], value, rtol=1e-4, atol=1e-6, msg=key)

    # negative control: the same checkpoint resumed without RandomStateHook does not continue as
    # the uninterrupted run did, so the hook is what makes the losses above equal
    assert 'random_state' in torch.load(killed / 'epoch_1.pth', weights_only=False)
    control = tmp_path / 'without_hook'
    run_tool('tools/train.py', config, '--work-dir', str(control), '--resume',
             str(killed / 'epoch_1.pth'), '--cfg-options', 'custom_hooks=[]')
    assert 'random_state' not in torch.load(control / 'epoch_2.pth', weights_only=False)
    unhooked = logged_runs(control)[-1]
    assert [r['iter'] for r in unhooked] == [r['iter'] for r in resumed]
    differing = [r['iter'] for r in unhooked
                 if r['loss'] != pytest.approx(expected[r['iter']], rel=1e-4)]
    assert differing, (unhooked, expected)


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


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize('config', [TOY_DET, TOY_SEG])
def test_simulated_training_memory_agrees_with_a_real_cpu_step(tmp_path, config):
    """The fake-tensor count of a float32 CPU step (no arithmetic) against the same step run
    for real, RSS measured as the tool measures it, within 15%; the two run side by side.
    384x480: big enough that tensors, not the process's fixed overhead, make up the peak."""
    shape = ['--shape', '384', '480', '--batch', '2']
    real, simulated = tmp_path / 'real.json', tmp_path / 'simulated.json'
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(run_tool, 'tools/analysis_tools/train_memory.py', config, *shape,
                            '--iters', '2', '--out', str(real)),
                pool.submit(run_tool, 'tools/analysis_tools/train_memory.py', config, *shape,
                            '--simulate', 'cpu', '--skip-with-cp', '--out', str(simulated))]
        result = runs[1].result()
        runs[0].result()
    measured = json.loads(real.read_text())['peak_rss_bytes']
    estimate = json.loads(simulated.read_text())['peak_bytes']['default']
    assert abs(estimate['total'] - measured) <= 0.15 * measured, (estimate, measured)
    adam_states = 2 * 4 * json.loads(simulated.read_text())['params']  # AdamW: 2 float32 a weight
    assert adam_states <= estimate['optimizer_state'] <= 1.01 * adam_states
    assert estimate['activations'] > estimate['parameters']
    assert 'simulated for cpu (no arithmetic run)' in result.stdout


def test_profile_tool_records_the_training_steps_operators_by_self_time(tmp_path):
    record = tmp_path / 'profile.json'
    for label in ('before', 'after', 'after'):
        run_tool('tools/analysis_tools/profile_train_step.py', '--arch', 'coatnet-pico',
                 '--shape', '64', '96', '--top', '8', '--threads', '1', '--label', label,
                 '--record', str(record))
    entries = json.loads(record.read_text())
    assert [e['label'] for e in entries] == ['before', 'after']  # a label's entry is replaced
    entry = entries[1]
    assert entry['shape'] == [64, 96] and entry['step_seconds'] > 0 and len(entry['top']) == 8
    shares = [item['share'] for item in entry['top']]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1
    names = {item['name'] for e in entries for item in e['top']}
    assert any(name.endswith('_backward') for name in names)  # the step ran a backward pass


@pytest.mark.slow
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
        (impl, size, mode)
        for impl in ('mmcoatnet', 'mmcoatnet-windowed', 'plain-reference', 'swin-t')
        for size in ((64, 64), (80, 112)) for mode in ('inference', 'train')}
    for row in rows:
        assert row['seconds'] > 0 and row['peak_memory_bytes'] > 0 and row['gflops'] > 0
        assert row['times'] and row['matmul_fraction'] > 0
    by_key = {(r['impl'], tuple(r['size']), r['mode']): r for r in rows}
    # FLOPs grow with the input (a training step's are the forward's times the tool's own factor:
    # an estimate, not a count, so not restated here)
    ours = [by_key[('mmcoatnet', size, 'inference')]['gflops'] for size in ((64, 64), (80, 112))]
    assert ours[1] > ours[0]
    assert by_key[('swin-t', (64, 64), 'inference')]['params'] > 20e6  # Swin-T, not a toy
    # the same weights and input give the same maps in every attention implementation
    agreement = report['agreement']
    assert agreement['reference'] == 'plain-reference'
    assert set(agreement['max_abs_diff']) == {'mmcoatnet', 'mmcoatnet-windowed'}
    assert agreement['max_abs_diff']['mmcoatnet'] < 1e-4
    assert report['machine']['matmul_gflops'] > 0
    table = (out / 'benchmark.md').read_text()
    assert table.count('| inference |') == 8 and table.count('| train |') == 8
