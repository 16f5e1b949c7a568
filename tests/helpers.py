"""What the test files share: the paths, one way to run a tool as a user runs it, the small toy
configs the tool tests write, and the readers of a run's logs."""
import glob
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest

from mmcoatnet.torch_compat import TORCH_VERSION

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOY_DET = osp.join(ROOT, 'configs', 'toy', 'maskrcnn_coatnet-pico_toy.py')
TOY_SEG = osp.join(ROOT, 'configs', 'toy', 'upernet_coatnet-pico_toy.py')
TOY_CLS = osp.join(ROOT, 'configs', 'toy', 'coatnet-pico_toy-cls.py')
TOY_DINO = osp.join(ROOT, 'configs', 'toy', 'dino_coatnet-pico_toy.py')
TOY_MASK2FORMER = osp.join(ROOT, 'configs', 'toy', 'mask2former_coatnet-pico_toy.py')
TOY_MASK2FORMER_INSTANCE = osp.join(ROOT, 'configs', 'toy',
                                    'mask2former_coatnet-pico_toy-instance.py')

# The learning runs of the shared fixtures (tests/conftest.py): the toy models overfit the toy
# data's 8 training images and are scored on them (the thresholds: tests/test_tools.py, and
# tests/test_query_heads.py for DINO and Mask2Former).
DET_EPOCHS = 30
SEG_ITERS = 100
DINO_EPOCHS = 25  # of 4 iterations (batch 2)
MASK2FORMER_ITERS = 80
MASK2FORMER_INSTANCE_EPOCHS = 25  # of 4 iterations (batch 2)

# OpenMP threads that sleep when idle instead of spinning: a training run's spinning threads
# otherwise compete with its own data-loading worker and anything else on 2 cores (10x slower seen).
# Under pytest-xdist each worker's tools get one thread: two workers share the 2 cores.
TOOL_ENV = dict(os.environ, OMP_WAIT_POLICY=os.environ.get('OMP_WAIT_POLICY', 'PASSIVE'))
if os.environ.get('PYTEST_XDIST_WORKER'):
    TOOL_ENV.setdefault('OMP_NUM_THREADS', '1')


def needs_torch(version, feature):
    """Skips a test of ``feature`` where this torch is older than ``version`` (a release named in
    mmcoatnet/torch_compat.py), naming both; make test-oldest runs the core tests on 2.1."""
    return pytest.mark.skipif(TORCH_VERSION < version,
                              reason=f'{feature} needs torch >= {version}; this is {TORCH_VERSION}')


def kernels_that_ran(run):
    """The attention kernels that ``run()`` ran, in order: each call's profiler range names its
    kernel (``coatnet.attention.<kernel>``)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as recorded:
        run()
    prefix = 'coatnet.attention.'
    return [event.name[len(prefix):] for event in recorded.events()
            if event.name.startswith(prefix)]


def run_tool(*args, check=True, timeout=600, env=None, cwd=ROOT):
    """``python *args`` in a fresh process, as a user runs a tool; asserts success unless
    ``check`` is False."""
    env = TOOL_ENV if env is None else {**TOOL_ENV, **env}
    result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout, env=env)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def small_det_config(tmp_path, toy_data, epochs=1, extra='', batch_size=4, workers=1,
                     overfit=False, name='det.py', base=TOY_DET):
    """The toy Mask R-CNN (or another toy detector: base) on the fixture's data. overfit: evaluate
    on the training images (a few images learned by heart show that training works, where a
    held-out score would need hours)."""
    root = f'{toy_data}/toy_coco/'
    split = 'train' if overfit else 'val'
    path = tmp_path / name
    path.write_text(f'''
_base_ = [{base!r}]
data_root = {root!r}
train_dataloader = dict(batch_size={batch_size}, num_workers={workers}, persistent_workers=False,
                        dataset=dict(data_root=data_root))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(
    data_root=data_root, ann_file='annotations/instances_{split}.json',
    data_prefix=dict(img='{split}/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_{split}.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs={epochs}, val_interval={epochs})
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=5))
log_processor = dict(window_size=1)  # each iteration's own loss, not a running mean, in the logs
{extra}
''')
    return str(path)


def small_seg_config(tmp_path, toy_data, iters=4, batch_size=2, overfit=False, extra='',
                     name='seg.py', base=TOY_SEG):
    """The toy UperNet (or another toy segmentor: base) on the fixture's data; overfit: evaluate
    on the training images."""
    root = f'{toy_data}/toy_ade'
    split = 'training' if overfit else 'validation'
    path = tmp_path / name
    path.write_text(f'''
_base_ = [{base!r}]
train_dataloader = dict(batch_size={batch_size}, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root={root!r}))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(
    data_root={root!r},
    data_prefix=dict(img_path='images/{split}', seg_map_path='annotations/{split}')))
test_dataloader = val_dataloader
train_cfg = dict(max_iters={iters}, val_interval={iters})
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval={iters}))
log_processor = dict(window_size=1)  # each iteration's own loss, not a running mean, in the logs
{extra}
''')
    return str(path)


def logged_runs(work_dir):
    """The training records of each run of a work dir (one log folder per run), oldest first; a
    line still being written is left out, so a running job's log can be read."""
    runs = []
    for log in sorted(glob.glob(osp.join(str(work_dir), '*', 'vis_data', 'scalars.json'))):
        with open(log) as f:
            lines = [line for line in f if line.endswith('\n') and '"loss"' in line]
        runs.append([json.loads(line) for line in lines])
    return runs


def scalars(work_dir):
    """The training records (one per logged iteration) of all runs of a work dir."""
    return [record for run in logged_runs(work_dir) for record in run]


def mean(values):
    return sum(values) / len(values)


def assert_loss_fell(records, key='loss', window=5, factor=0.5):
    """The mean of the last logged losses is well below the mean of the first ones."""
    losses = [r[key] for r in records]
    assert len(losses) >= 2 * window and all(math.isfinite(v) for v in losses), losses
    first, last = mean(losses[:window]), mean(losses[-window:])
    assert last < factor * first, (first, last, losses)


def read_test_metrics(work_dir):
    """The metrics tools/test.py wrote (one run per work dir)."""
    files = glob.glob(str(work_dir / '*' / '*.json'))
    assert len(files) == 1, files
    with open(files[0]) as f:
        return json.load(f)
