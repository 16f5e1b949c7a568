"""Checks a config's data and pretrained checkpoints before any model is built, so a missing file
stops the run with what to do instead of a traceback from inside a data loader."""
import os.path as osp
import re
from typing import Iterator, List

from mmengine.config import Config, ConfigDict

CONVERT_COMMAND = ('python tools/model_converters/timm2mmcoatnet.py <timm model.safetensors> {path}'
                   '  (README, "ImageNet-pretrained weights")')


class PreflightError(SystemExit):
    """Stops the tool with a message; a SystemExit so no traceback is printed."""

    def __init__(self, message: str):
        super().__init__(f'error: {message}')


def _datasets(dataset) -> Iterator[dict]:
    """The datasets a (possibly wrapped: RepeatDataset, ConcatDataset, ...) dataset config reads."""
    if isinstance(dataset, (list, tuple)):
        for item in dataset:
            yield from _datasets(item)
    elif isinstance(dataset, dict):
        inner = dataset.get('dataset', dataset.get('datasets'))
        if inner is not None:
            yield from _datasets(inner)
        else:
            yield dataset


def missing_data_paths(cfg: Config, splits=('train', 'val', 'test')) -> List[str]:
    missing = []
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        for dataset in _datasets(loader.get('dataset')):
            root = dataset.get('data_root') or ''
            paths = [dataset.get('ann_file')] + list((dataset.get('data_prefix') or {}).values())
            for path in paths:
                if not path or re.match(r'^\w+://', str(path)):
                    continue
                full = path if osp.isabs(path) else osp.join(root, path)
                if not osp.exists(full) and full not in missing:
                    missing.append(full)
    return missing


def check_data(cfg: Config, splits=('train', 'val', 'test')) -> None:
    missing = missing_data_paths(cfg, splits)
    if missing:
        raise PreflightError(
            'dataset not found: expected ' + ', '.join(missing) +
            '. Lay the dataset out as the README\'s "Datasets" section shows (or set data_root with '
            '--cfg-options), or try the pipeline on the built-in toy data: make demo')


def _pretrained_paths(node) -> Iterator[str]:
    if isinstance(node, (dict, ConfigDict)):
        init_cfgs = node.get('init_cfg')
        for init_cfg in init_cfgs if isinstance(init_cfgs, list) else [init_cfgs]:
            if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
                yield init_cfg.get('checkpoint')
        for value in node.values():
            yield from _pretrained_paths(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _pretrained_paths(value)


def check_pretrained(cfg: Config) -> None:
    for path in _pretrained_paths(cfg.get('model')):
        if path and not re.match(r'^[\w+.-]+://', path) and not osp.isfile(path):
            raise PreflightError(
                f'pretrained checkpoint {path} not found. Download the timm weights and convert '
                f'them: {CONVERT_COMMAND.format(path=path)}; or train from scratch with '
                "--cfg-options model.backbone.init_cfg=None")


def check_load_from(cfg: Config) -> None:
    path = cfg.get('load_from')
    if path and not re.match(r'^[\w+.-]+://', path) and not osp.isfile(path):
        raise PreflightError(f'checkpoint {path} (load_from / --resume) not found')
