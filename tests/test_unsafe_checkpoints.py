"""Checkpoints whose pickle would run code: every way a user hands a checkpoint to the project
refuses them before anything runs. The payload creates a file when unpickled, so "nothing ran" is
checked on the disk, not taken from the message."""
import os.path as osp

import pytest
import torch

from mmcoatnet.models import CoAtNet

from helpers import run_tool, small_det_config, small_seg_config


class CreatesFile:
    """Unpickled, this calls open(path, 'w'): the file appearing is the code having run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def booby_trapped_checkpoint(tmp_path, name):
    """An mmengine-style checkpoint of real CoAtNet tensors with the payload in its meta; returns
    the checkpoint's path and the path of the file the payload would create."""
    target = tmp_path / f'{name}.created'
    state = {f'backbone.{k}': v for k, v in CoAtNet(arch='coatnet-pico').state_dict().items()}
    path = tmp_path / f'{name}.pth'
    torch.save({'meta': {'epoch': 1, 'iter': 2, 'note': CreatesFile(str(target))},
                'state_dict': state}, path)
    return str(path), target


def test_the_payload_really_creates_its_file_when_unpickled(tmp_path):
    # the control: without weights-only loading the checkpoint runs code, so the tests below,
    # which check that the file is absent, would fail if any entry point unpickled it
    path, target = booby_trapped_checkpoint(tmp_path, 'control')
    torch.load(path, weights_only=False)
    assert target.exists()


def entry_point(kind, tmp_path, toy_data, checkpoint):
    """The command line of one entry point, given the booby-trapped checkpoint."""
    if kind == 'backbone init_cfg':
        config = small_det_config(tmp_path, toy_data, extra=(
            "model = dict(backbone=dict(init_cfg=dict(_delete_=True, type='Pretrained', "
            f"checkpoint={checkpoint!r})))"))
        return ['tools/train.py', config, '--work-dir', str(tmp_path / 'work')]
    if kind == 'train.py --resume':
        config = small_det_config(tmp_path, toy_data)
        return ['tools/train.py', config, '--work-dir', str(tmp_path / 'work'),
                '--resume', checkpoint]
    if kind == 'load_from':
        config = small_det_config(tmp_path, toy_data, extra=f'load_from = {checkpoint!r}')
        return ['tools/train.py', config, '--work-dir', str(tmp_path / 'work')]
    if kind == 'test.py':
        config = small_det_config(tmp_path, toy_data)
        return ['tools/test.py', config, checkpoint, '--work-dir', str(tmp_path / 'work')]
    if kind == 'init_detector':
        # a user's script: mmdet's API with a config path; the config's custom_imports bring
        # mmcoatnet in (nothing imports it explicitly)
        config = small_det_config(tmp_path, toy_data)
        return ['-c', 'from mmdet.apis import init_detector; '
                f'init_detector({config!r}, {checkpoint!r}, device="cpu")']
    if kind == 'mmseg init_model':
        config = small_seg_config(tmp_path, toy_data)
        return ['-c', 'from mmseg.apis import init_model; '
                f'init_model({config!r}, {checkpoint!r}, device="cpu")']
    if kind == 'converter':
        return ['tools/model_converters/timm2mmcoatnet.py', checkpoint, str(tmp_path / 'out.pth')]
    raise ValueError(kind)


@pytest.mark.parametrize('kind', ['backbone init_cfg', 'train.py --resume', 'load_from', 'test.py',
                                  'init_detector', 'mmseg init_model', 'converter'])
def test_every_entry_point_refuses_a_pickle_that_runs_code(tmp_path, toy_data, kind):
    checkpoint, target = booby_trapped_checkpoint(tmp_path, 'evil')
    result = run_tool(*entry_point(kind, tmp_path, toy_data, checkpoint), check=False)
    assert not target.exists(), f'{kind} unpickled the payload: {target} was created'
    assert result.returncode != 0
    assert f'refusing to load {checkpoint}' in result.stderr, \
        result.stdout[-2000:] + result.stderr[-3000:]
    assert not osp.exists(tmp_path / 'out.pth')  # the converter wrote nothing
