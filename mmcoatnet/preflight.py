"""Checks a config's data and pretrained checkpoints before any model is built, so a missing file
stops the run with what to do instead of a traceback from inside a data loader."""
import os.path as osp
import re
from typing import Iterator, List, Tuple

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


def _dataset_paths(dataset: dict) -> List[str]:
    """The files and folders a dataset config reads: ann_file and data_prefix (a dict in mmdet and
    mmseg, a folder name in mmpretrain) under data_root; mmpretrain's ImageNet reads
    <data_root>/<split> when it has no data_prefix; a dataset given by data_root alone reads it."""
    root = dataset.get('data_root') or ''
    prefix = dataset.get('data_prefix')
    prefixes = list(prefix.values()) if isinstance(prefix, dict) else [prefix]
    if not any(prefixes) and dataset.get('split'):
        prefixes = [dataset.get('split')]
    paths = [p for p in [dataset.get('ann_file')] + prefixes if p]
    if not paths:
        return [root] if root else []
    return [p if osp.isabs(p) else osp.join(root, p) for p in paths]


def missing_data_paths(cfg: Config, splits=('train', 'val', 'test')) -> List[str]:
    missing = []
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        for dataset in _datasets(loader.get('dataset')):
            for full in _dataset_paths(dataset):
                if re.match(r'^\w+://', str(full)):
                    continue
                if not osp.exists(full) and full not in missing:
                    missing.append(full)
    return missing


# The built-in toy data of each library's demo, for a user without the real dataset.
TOY_DEMOS = {
    'mmpretrain': 'python tools/make_toy_data.py --only cls && '
                  'python tools/train.py configs/toy/coatnet-pico_toy-cls.py',
}


def check_data(cfg: Config, splits=('train', 'val', 'test')) -> None:
    missing = missing_data_paths(cfg, splits)
    if missing:
        demo = TOY_DEMOS.get(cfg.get('default_scope'), 'make demo')
        raise PreflightError(
            'dataset not found: expected ' + ', '.join(missing) +
            '. Lay the dataset out as the README\'s "Datasets" section shows (or set data_root '
            f'with --cfg-options), or try the pipeline on the built-in toy data: {demo}')


def _pretrained_paths(node, key: str = 'model') -> Iterator[Tuple[str, str]]:
    """(config key of the init_cfg, checkpoint path) of every Pretrained init under ``node``."""
    if isinstance(node, (dict, ConfigDict)):
        init_cfgs = node.get('init_cfg')
        for init_cfg in init_cfgs if isinstance(init_cfgs, list) else [init_cfgs]:
            if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
                yield f'{key}.init_cfg', init_cfg.get('checkpoint')
        for name, value in node.items():
            yield from _pretrained_paths(value, f'{key}.{name}')
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _pretrained_paths(value, f'{key}.{index}')


def check_pretrained(cfg: Config) -> None:
    found = list(_pretrained_paths(cfg.get('model')))
    for _, path in found:
        if path and not re.match(r'^[\w+.-]+://', path) and not osp.isfile(path):
            # every init that reads this file: a fine-tuning config also loads its head from it
            keys = ' '.join(f'{key}=None' for key, other in found if other == path)
            raise PreflightError(
                f'pretrained checkpoint {path} not found. Download the timm weights and convert '
                f'them: {CONVERT_COMMAND.format(path=path)}; or put there a checkpoint of this '
                f'project\'s own training (e.g. work_dirs/<config>/epoch_<n>.pth); or train from '
                f'scratch with --cfg-options {keys}')


def check_load_from(cfg: Config) -> None:
    path = cfg.get('load_from')
    if path and not re.match(r'^[\w+.-]+://', path) and not osp.isfile(path):
        raise PreflightError(f'checkpoint {path} (load_from / --resume) not found')
