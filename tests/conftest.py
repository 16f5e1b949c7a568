"""Fixtures shared by the test files: the toy datasets and the toy models trained on them, each
made once per test run. Under pytest-xdist (``make test`` runs two workers) the first worker that
asks makes it, under a file lock, in a folder all workers see; the others wait for it and reuse it.
"""
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from filelock import FileLock

from helpers import (
    DET_EPOCHS,
    DINO_EPOCHS,
    MASK2FORMER_INSTANCE_EPOCHS,
    MASK2FORMER_ITERS,
    SEG_ITERS,
    TOY_CLS,
    TOY_DINO,
    TOY_MASK2FORMER,
    TOY_MASK2FORMER_INSTANCE,
    run_tool,
    small_det_config,
    small_seg_config,
)


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


# The session fixtures that train a model, in the order they are defined. The tests that request one
# (directly or through another fixture) are its group: under xdist they run on one worker, one after
# the other, so that the other worker never waits for the training, and first (see the hooks below).
TRAINING_FIXTURES = []


def training_fixture(function):
    """A session fixture that trains a model; its tests are a group (TRAINING_FIXTURES)."""
    TRAINING_FIXTURES.append(function.__name__)
    return pytest.fixture(scope='session')(function)


@training_fixture
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


@training_fixture
def trained_seg(shared_dir, toy_data):
    """The toy UperNet trained once to overfit the toy data's training images."""
    def train(folder):
        config = small_seg_config(folder, toy_data, iters=SEG_ITERS, batch_size=4, overfit=True)
        run_tool('tools/train.py', config, '--work-dir', str(folder / 'work'))

    folder = made_once(shared_dir, 'trained_seg', train)
    return str(folder / 'seg.py'), folder / 'work', folder / 'work' / f'iter_{SEG_ITERS}.pth'


@training_fixture
def trained_dino(shared_dir, toy_data):
    """The toy DINO (configs/toy/dino_coatnet-pico_toy.py) trained once to overfit the toy data's
    8 training images: (config, work dir, checkpoint)."""
    def train(folder):
        config = small_det_config(
            folder, toy_data, epochs=DINO_EPOCHS, batch_size=2, workers=0, overfit=True,
            base=TOY_DINO, name='dino.py',
            extra=f'default_hooks = dict(logger=dict(interval=1), '
                  f'checkpoint=dict(interval={DINO_EPOCHS}))')
        run_tool('tools/train.py', config, '--work-dir', str(folder / 'work'))

    folder = made_once(shared_dir, 'trained_dino', train)
    return str(folder / 'dino.py'), folder / 'work', folder / 'work' / f'epoch_{DINO_EPOCHS}.pth'


@training_fixture
def trained_mask2former(shared_dir, toy_data):
    """The toy Mask2Former (configs/toy/mask2former_coatnet-pico_toy.py) trained once to overfit
    the toy data's training images."""
    def train(folder):
        config = small_seg_config(folder, toy_data, iters=MASK2FORMER_ITERS, batch_size=4,
                                  overfit=True, base=TOY_MASK2FORMER, name='mask2former.py')
        run_tool('tools/train.py', config, '--work-dir', str(folder / 'work'))

    folder = made_once(shared_dir, 'trained_mask2former', train)
    return (str(folder / 'mask2former.py'), folder / 'work',
            folder / 'work' / f'iter_{MASK2FORMER_ITERS}.pth')


@training_fixture
def trained_mask2former_instance(shared_dir, toy_data):
    """The toy Mask2Former for instances (configs/toy/mask2former_coatnet-pico_toy-instance.py)
    trained once to overfit the toy data's 8 training images."""
    epochs = MASK2FORMER_INSTANCE_EPOCHS

    def train(folder):
        config = small_det_config(
            folder, toy_data, epochs=epochs, batch_size=2, workers=0, overfit=True,
            base=TOY_MASK2FORMER_INSTANCE, name='mask2former_instance.py',
            extra=f'default_hooks = dict(logger=dict(interval=1), '
                  f'checkpoint=dict(interval={epochs}))')
        run_tool('tools/train.py', config, '--work-dir', str(folder / 'work'))

    folder = made_once(shared_dir, 'trained_mask2former_instance', train)
    return (str(folder / 'mask2former_instance.py'), folder / 'work',
            folder / 'work' / f'epoch_{epochs}.pth')


@training_fixture
def toy_pretraining(shared_dir, toy_cls):
    """The toy pre-training run (configs/toy/coatnet-pico_toy-cls.py) on the toy set: its work
    dir."""
    data = [f'{split}_dataloader.dataset.data_root={toy_cls}' for split in ('train', 'val', 'test')]
    return made_once(shared_dir, 'toy_pretraining', lambda work_dir: run_tool(
        'tools/train.py', TOY_CLS, '--work-dir', str(work_dir), '--cfg-options', *data))


def fixture_group(item):
    """The training fixture a test requests, directly or not (the first of TRAINING_FIXTURES), or
    None."""
    return next((name for name in TRAINING_FIXTURES if name in item.fixturenames), None)


GROUPS_DIR = 'mmcoatnet_fixture_groups'  # the key of the folder in xdist's workerinput
groups_dir_key = pytest.StashKey[str]()  # the controller's


def pytest_collection_modifyitems(config, items):
    """Order (a stable sort): the tests of a training fixture, then slow tests, then the rest. Under
    xdist the long ones start early, instead of one of them running alone at the end. An xdist
    worker also writes each test's group for the controller, which sees node ids only."""
    def rank(item):
        if fixture_group(item):
            return 0
        return 1 if item.get_closest_marker('slow') else 2

    items.sort(key=rank)
    workerinput = getattr(config, 'workerinput', None)
    if workerinput is not None and GROUPS_DIR in workerinput:
        groups = {item.nodeid: group for item in items for group in [fixture_group(item)] if group}
        path = Path(workerinput[GROUPS_DIR]) / f"{workerinput['workerid']}.json"
        path.with_suffix('.tmp').write_text(json.dumps(groups))
        os.replace(path.with_suffix('.tmp'), path)  # read whole or not at all


@pytest.hookimpl(optionalhook=True)  # xdist's hook, on the controller
def pytest_configure_node(node):
    """Tells each worker the folder for its tests' groups (pytest_collection_modifyitems)."""
    stash = node.config.stash
    if groups_dir_key not in stash:
        stash[groups_dir_key] = tempfile.mkdtemp(prefix='mmcoatnet-fixture-groups-')
    node.workerinput[GROUPS_DIR] = stash[groups_dir_key]


def pytest_unconfigure(config):
    if groups_dir_key in config.stash:
        shutil.rmtree(config.stash[groups_dir_key], ignore_errors=True)


@pytest.hookimpl(optionalhook=True)  # xdist's hook: without xdist, not called
def pytest_xdist_make_scheduler(config, log):
    """xdist's load scheduling with the tests of each training fixture as one unit of work, from
    the groups the workers wrote at collection, which ends before scheduling starts. (xdist 3.8's
    own xdist_group marks are not honoured under pytest 9: its groups were split across workers.)"""
    from xdist.scheduler import LoadScopeScheduling

    class FixtureGroupScheduling(LoadScopeScheduling):
        groups = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:
                files = sorted(Path(config.stash[groups_dir_key]).glob('*.json'))
                if not files:
                    raise RuntimeError('tests/conftest.py: no xdist worker wrote the groups of '
                                       'the training fixtures\' tests')
                self.groups = {}
                for path in files:  # every worker collects the same tests
                    self.groups.update(json.loads(path.read_text()))
            return self.groups.get(nodeid, nodeid)

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
