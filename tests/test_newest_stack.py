"""OneDL's maintained fork of OpenMMLab (`make test-newest`): which OpenMMLab libraries mmcoatnet
accepts, checked everywhere (the two families' ranges, a mix of them refused at import naming both
distributions); and, on the fork's stack only, the toy detector, segmentor and classifier each
train a step through our tools/train.py and through the fork's own (the tools its packages ship
under .mim/tools, which `mim train` runs)."""
import importlib.metadata
import math
import os.path as osp
from pathlib import Path

import pytest
import tomllib  # Python >= 3.11, as the tests run
from packaging.requirements import Requirement

from mmcoatnet import mm_compat
from mmcoatnet.mm_compat import LIBRARIES, ONEDL, OPENMMLAB, stack_problems

from helpers import ROOT, TOY_CLS, run_tool, scalars, small_det_config, small_seg_config

ON_THE_FORK = mm_compat.onedl_installed('mmcv')
fork_only = pytest.mark.skipif(not ON_THE_FORK, reason="OneDL's fork is not installed here "
                               '(make test-newest runs these)')

OFFICIAL = {'mmengine': '0.10.7', 'mmcv': '2.1.0', 'mmdet': '3.3.0', 'mmsegmentation': '1.2.2',
            'mmpretrain': '1.2.0'}
FORK = {'onedl-mmengine': '0.10.12', 'onedl-mmcv': '2.3.6', 'onedl-mmdetection': '3.5.1',
        'onedl-mmsegmentation': '1.4.2', 'onedl-mmpretrain': '1.3.6'}


def test_the_ranges_are_pyprojects_extras():
    """mm_compat's table and pyproject.toml's extras name the same ranges, family by family."""
    extras = tomllib.loads((Path(ROOT) / 'pyproject.toml').read_text())['project'][
        'optional-dependencies']
    declared = {}
    for name, lines in extras.items():
        for line in lines:
            requirement = Requirement(line)
            spec = str(requirement.specifier)
            assert declared.setdefault(requirement.name, spec) == spec, (name, line)
    table = {dist: spec for rows in LIBRARIES.values() for dist, spec in rows.values()}
    assert {dist: declared.get(dist) for dist in table} == \
        {dist: str(Requirement(dist + spec).specifier) for dist, spec in table.items()}
    dependencies = {Requirement(line).name for line in
                    tomllib.loads((Path(ROOT) / 'pyproject.toml').read_text())['project'][
                        'dependencies']}
    assert not dependencies & set(table), 'a family named in the dependencies: pip would ' \
        'install it beside the other'


@pytest.mark.parametrize('installed', [OFFICIAL, FORK], ids=['openmmlab', 'onedl'])
def test_either_family_alone_is_accepted(installed):
    assert stack_problems(installed, '2.8.0') == []


def test_the_oldest_tested_releases_are_accepted():
    oldest = {'mmengine': '0.7.1', 'mmcv': '2.0.0rc4', 'mmdet': '3.0.0'}
    assert stack_problems(oldest, '2.1.2') == []


def test_official_mmcv_with_the_forks_mmdet_is_refused_naming_both():
    problems = stack_problems({'mmengine': '0.10.7', 'mmcv': '2.1.0',
                               'onedl-mmdetection': '3.5.1'}, '2.8.0')
    assert len(problems) == 1
    assert 'mmcv 2.1.0' in problems[0] and 'onedl-mmdetection 3.5.1' in problems[0]


def test_one_library_from_both_families_is_refused_naming_both():
    """`pip install onedl-mmdetection` beside mmdet: both write mmdet/."""
    problems = stack_problems({**OFFICIAL, 'onedl-mmdetection': '3.5.1'}, '2.8.0')
    assert any('mmdet is installed twice' in p and 'mmdet 3.3.0' in p and
               'onedl-mmdetection 3.5.1' in p for p in problems), problems
    assert any('mmcv 2.1.0' in p and 'onedl-mmdetection' in p for p in problems), problems


def test_releases_outside_the_tested_ranges_are_refused():
    assert stack_problems({**OFFICIAL, 'mmcv': '2.2.0'}) == [
        "mmcv 2.2.0 is installed; mmcoatnet is tested with mmcv>=2.0.0rc4,<2.2.0 "
        f"({OPENMMLAB} mmcv)"]
    (problem,) = stack_problems({**FORK, 'onedl-mmcv': '2.4.0'}, '2.8.0')
    assert 'onedl-mmcv 2.4.0' in problem and ONEDL in problem
    assert stack_problems({**FORK, 'onedl-mmengine': '0.10.11'}, '2.8.0')


def test_the_fork_below_its_torch_is_refused():
    (problem,) = stack_problems(FORK, '2.1.2')
    assert 'torch 2.1.2' in problem and 'torch >= 2.4' in problem


def test_importing_mmcoatnet_in_a_mixed_environment_names_both_distributions(tmp_path):
    """A real import: this environment plus a distribution of the other family (its metadata on
    the path, as pip leaves it), in a fresh interpreter."""
    other = {'onedl-mmdetection': '3.5.1'} if not ON_THE_FORK else {'mmcv': '2.1.0'}
    (name, version), = other.items()
    info = tmp_path / f'{name.replace("-", "_")}-{version}.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n')
    result = run_tool('-c', 'import mmcoatnet', check=False,
                      env={'PYTHONPATH': str(tmp_path)})
    mmcv = 'onedl-mmcv' if ON_THE_FORK else 'mmcv'
    here = f'{mmcv} {importlib.metadata.version(mmcv)}'
    assert result.returncode != 0
    assert 'IncompatibleStackError' in result.stderr
    assert f'{name} {version}' in result.stderr and here in result.stderr, result.stderr[-2000:]


@fork_only
def test_the_forks_mmengine_is_not_trusted_to_load_checkpoints():
    """onedl-mmengine 0.10.12 retries a refused weights-only load with weights_only=False:
    mmcoatnet keeps its own loaders in place (tests/test_checkpoint.py: an unsafe file is
    refused)."""
    import inspect

    from mmengine.runner import CheckpointLoader, checkpoint

    from mmcoatnet import safe_load
    assert 'weights_only=False' in inspect.getsource(checkpoint)
    assert not safe_load.mmengine_loads_weights_only()
    assert CheckpointLoader._schemes[''] is safe_load.load_local_checkpoint


@fork_only
def test_a_config_with_an_mmseg_base_loads_before_mmcoatnet_is_imported():
    """onedl-mmengine looks mmseg:: up as the distribution mmsegmentation, which the fork names
    onedl-mmsegmentation: the protocol's first base (configs/_base_/onedl_scopes.py) has
    mmcoatnet map the scope, so the fork's own tools and mmseg.apis.init_model load the config."""
    config = osp.join(ROOT, 'configs', 'upernet_coatnet0_ade20k.py')
    result = run_tool('-c', 'from mmengine.config import Config; '
                      f'print(Config.fromfile({config!r}).model.decode_head.type)')
    assert result.stdout.split()[-1] == 'UPerHead'


def fork_tool(module):
    """The fork's tools/train.py, as its package ships it (mim train runs it)."""
    import importlib
    return osp.join(osp.dirname(importlib.import_module(module).__file__), '.mim', 'tools',
                    'train.py')


def cls_config(tmp_path, toy_cls):
    path = tmp_path / 'cls.py'  # one step of 4 images, validation on 4
    path.write_text(f'''
_base_ = [{TOY_CLS!r}]
train_dataloader = dict(num_workers=0, persistent_workers=False, batch_size=4,
                        dataset=dict(data_root={toy_cls!r}, indices=4))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root={toy_cls!r}, indices=4))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(logger=dict(interval=1))
''')
    return str(path), [], 'epoch_1.pth'


# tests/test_stack.py trains the detector and the segmentor through our tools/train.py
@fork_only
@pytest.mark.parametrize('task, tool', [('cls', 'ours'), ('det', 'mmdet'), ('seg', 'mmseg'),
                                        ('cls', 'mmpretrain')])
def test_a_toy_config_trains_a_step(tmp_path, request, task, tool):
    if task == 'det':  # one iteration of two images, no validation
        config = small_det_config(tmp_path, request.getfixturevalue('toy_data'), batch_size=2,
                                  workers=0)
        options, checkpoint = ['train_dataloader.dataset.indices=2', 'train_cfg.val_interval=2'], \
            'epoch_1.pth'
    elif task == 'seg':
        config = small_seg_config(tmp_path, request.getfixturevalue('toy_data'), iters=1)
        options, checkpoint = ['train_cfg.val_interval=2'], 'iter_1.pth'
    else:
        config, options, checkpoint = cls_config(tmp_path, request.getfixturevalue('toy_cls'))
    train = 'tools/train.py' if tool == 'ours' else fork_tool(tool)
    run_tool(train, config, '--work-dir', str(tmp_path / 'w'),
             *(['--cfg-options', *options] if options else []))
    records = [r for r in scalars(tmp_path / 'w') if 'loss' in r]
    assert len(records) == 1 and math.isfinite(records[0]['loss']) and records[0]['loss'] > 0
    assert (tmp_path / 'w' / checkpoint).is_file()
