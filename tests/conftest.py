"""Fixtures shared by the test files: the toy datasets and the toy models trained on them, each
made once per test run. Under pytest-xdist (``make test`` runs two workers) the first worker that
asks makes it, under a file lock, in a folder all workers see; the others wait for it and reuse it.
"""
import os

import pytest
from filelock import FileLock

from helpers import DET_EPOCHS, SEG_ITERS, TOY_CLS, run_tool, small_det_config, small_seg_config


@pytest.fixture(scope='session')
def shared_dir(tmp_path_factory):
    """A folder of this test run that every xdist worker sees (the workers' base temp's parent)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base


def made_once(shared_dir, name, make):
    """``shared_dir/name``, made by ``make(path)`` by the first worker to ask (a file lock)."""
    path = shared_dir / name
    with FileLock(str(path) + '.lock'):
        if not (path / '.done').exists():
            path.mkdir(exist_ok=True)
            make(path)
            (path / '.done').touch()
    return path


@pytest.fixture(scope='session')
def toy_data(shared_dir):
    """The toy COCO and ADE20K sets, small: 8 training and 4 validation images of 128x128."""
    return made_once(shared_dir, 'toy_data', lambda out: run_tool(
        'tools/make_toy_data.py', '--out', str(out), '--num-train', '8', '--num-val', '4',
        '--size', '128', '--cls-train', '0', '--cls-val', '0'))


@pytest.fixture(scope='session')
def toy_cls(shared_dir):
    """The toy classification set at the demo's size (64x64, 300 + 60 images per class)."""
    out = made_once(shared_dir, 'toy_cls_data', lambda out: run_tool(
        'tools/make_toy_data.py', '--out', str(out), '--only', 'cls'))
    return str(out / 'toy_cls')


@pytest.fixture(scope='session')
def trained_det(shared_dir, toy_data):
    """The toy Mask R-CNN trained once to overfit the toy data's 8 training images, shared by the
    tests that need a trained detector: (config, work dir, checkpoint)."""
    def train(folder):
        config = small_det_config(
            folder, toy_data, epochs=DET_EPOCHS, workers=0, overfit=True,
            extra=f'default_hooks = dict(logger=dict(interval=1), '
                  f'checkpoint=dict(interval={DET_EPOCHS}))')
        run_tool('tools/train.py', config, '--work-dir', str(folder / 'work'))

    folder = made_once(shared_dir, 'trained_det', train)
    return str(folder / 'det.py'), folder / 'work', folder / 'work' / f'epoch_{DET_EPOCHS}.pth'


@pytest.fixture(scope='session')
def trained_seg(shared_dir, toy_data):
    """The toy UperNet trained once to overfit the toy data's training images."""
    def train(folder):
        config = small_seg_config(folder, toy_data, iters=SEG_ITERS, batch_size=4, overfit=True)
        run_tool('tools/train.py', config, '--work-dir', str(folder / 'work'))

    folder = made_once(shared_dir, 'trained_seg', train)
    return str(folder / 'seg.py'), folder / 'work', folder / 'work' / f'iter_{SEG_ITERS}.pth'


@pytest.fixture(scope='session')
def toy_pretraining(shared_dir, toy_cls):
    """The toy pre-training run (configs/toy/coatnet-pico_toy-cls.py) on the toy set: its work
    dir."""
    data = [f'{split}_dataloader.dataset.data_root={toy_cls}' for split in ('train', 'val', 'test')]
    return made_once(shared_dir, 'toy_pretraining', lambda work_dir: run_tool(
        'tools/train.py', TOY_CLS, '--work-dir', str(work_dir), '--cfg-options', *data))


# The tests of each training fixture: under xdist they run on one worker, one after the other, so
# that the other worker never waits for the fixture (pytest_xdist_make_scheduler), and first.
FIXTURE_GROUPS = {
    'toy_pretraining': ('test_toy_pretraining_beats_chance',
                        'test_fine_tuning_configs_start_from_the_classification_checkpoint'),
    'trained_det': ('test_toy_mask_rcnn_trains_tests_and_draws',
                    'test_inference_detector_api_with_a_trained_toy_checkpoint'),
    'trained_seg': ('test_toy_upernet_trains_and_tests',),
}


def fixture_group(nodeid: str):
    name = nodeid.split('::')[-1].split('[')[0]
    return next((group for group, tests in FIXTURE_GROUPS.items() if name in tests), None)


def pytest_collection_modifyitems(items):
    """Order (a stable sort): the tests of a training fixture, then slow tests, then the rest. Under
    xdist the long ones start early, instead of one of them running alone at the end."""
    def rank(item):
        if fixture_group(item.nodeid):
            return 0
        return 1 if item.get_closest_marker('slow') else 2

    items.sort(key=rank)


@pytest.hookimpl(optionalhook=True)  # xdist's hook: without xdist, not called
def pytest_xdist_make_scheduler(config, log):
    """xdist's load scheduling with each FIXTURE_GROUPS entry as one unit of work. (xdist 3.8's
    own xdist_group marks are not honoured under pytest 9: its groups were split across workers.)"""
    from xdist.scheduler import LoadScopeScheduling

    class FixtureGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return fixture_group(nodeid) or nodeid

    return FixtureGroupScheduling(config, log)


def pytest_configure(config):
    """One torch thread per xdist worker: two workers share the 2 cores."""
    if os.environ.get('PYTEST_XDIST_WORKER'):
        import torch
        torch.set_num_threads(1)


@pytest.fixture(scope='session')
def real_layout_data(shared_dir):
    """The toy scenes as COCO 2017 and ADEChallengeData2016 are laid out (coco/, ade/...), at a
    root other than data/: 4 training and 2 validation images of 128x128."""
    return made_once(shared_dir, 'real_layout_data', lambda out: run_tool(
        'tools/make_toy_data.py', '--out', str(out), '--layout', 'real', '--num-train', '4',
        '--num-val', '2', '--size', '128'))


@pytest.fixture(scope='session')
def recipe_checkpoints(shared_dir):
    """checkpoints/ as the recipes expect it, made the way a user makes it: timm's weights (here a
    randomly initialised timm model; no hub is reachable) as model.safetensors, converted by
    tools/model_converters/timm2mmcoatnet.py. Returns the folder holding checkpoints/."""
    def make(folder):
        import timm
        import torch
        from safetensors.torch import save_file
        for name in ('coatnet_0_rw_224.sw_in1k', 'coatnet_1_rw_224.sw_in1k'):
            torch.manual_seed(0)
            model = timm.create_model(name.split('.')[0])
            download = folder / 'downloads' / name
            download.mkdir(parents=True)
            save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                      str(download / 'model.safetensors'))
            run_tool('tools/model_converters/timm2mmcoatnet.py',
                     str(download / 'model.safetensors'),
                     str(folder / 'checkpoints' / f'{name}.pth'))

    return made_once(shared_dir, 'recipe_checkpoints', make)
