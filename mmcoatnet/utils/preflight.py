"""Checks a config's data and pretrained checkpoints before any model is built, so a missing file
stops the run with what to do instead of a traceback from inside a data loader."""
import os.path as osp
import re
from typing import Iterator, List, Tuple

from mmengine.config import Config, ConfigDict

from ..models.archs import ARCH_SETTINGS
from .data_root import EVALUATOR_PATH_KEYS, datasets, evaluators
from .errors import ToolError

CONVERTER = 'python tools/model_converters/timm2mmcoatnet.py'
TIMM_NAMES = sorted({row['timm_name'] for row in ARCH_SETTINGS.values() if row.get('timm_name')})


class PreflightError(ToolError):
    """A file the run needs is missing; the message says how to get it."""


def _dataset_paths(dataset: dict) -> List[str]:
    """The files and folders a dataset config reads: ann_file and data_prefix (a dict in mmdet and
    mmseg, a folder name in mmpretrain) under data_root; mmpretrain's ImageNet reads
    <data_root>/<split> when it has no data_prefix; a dataset given by data_root alone reads it."""
    root = dataset.get('data_root') or ''
    prefix = dataset.get('data_prefix')
    if isinstance(prefix, dict) and not _loads_mmdet_seg_maps(dataset):
        # mmdet's Mask2Former instance config keeps its panoptic base's seg folder, never read
        prefix = {key: value for key, value in prefix.items() if key != 'seg'}
    prefixes = list(prefix.values()) if isinstance(prefix, dict) else [prefix]
    if not any(prefixes) and dataset.get('split'):
        prefixes = [dataset.get('split')]
    paths = [p for p in [dataset.get('ann_file')] + prefixes if p]
    if not paths:
        return [root] if root else []
    return [p if osp.isabs(p) else osp.join(root, p) for p in paths]


def _loads_mmdet_seg_maps(dataset: dict) -> bool:
    """Whether an mmdet dataset's pipeline reads the maps under its ``seg`` prefix: panoptic
    annotations, or LoadAnnotations with with_seg."""
    return any(step.get('type') == 'LoadPanopticAnnotations' or step.get('with_seg')
               for step in dataset.get('pipeline') or [] if isinstance(step, dict))


def missing_data_paths(cfg: Config, splits=('train', 'val', 'test')) -> List[str]:
    """Every dataset file or folder, and every evaluator file, of ``splits`` that does not exist."""
    paths = []
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        for dataset in datasets(loader.get('dataset') if loader else None):
            paths += _dataset_paths(dataset)
    paths += [metric[key] for metric in evaluators(cfg, [s for s in splits if s != 'train'])
              for key in EVALUATOR_PATH_KEYS if isinstance(metric.get(key), str)]
    missing = []
    for path in paths:
        if not re.match(r'^\w+://', str(path)) and not osp.exists(path) and path not in missing:
            missing.append(path)
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
            '. Lay the dataset out as docs/training.md ("Datasets") shows, or move every path '
            'to where it is with --data-root DIR, or try the pipeline on the built-in toy data: '
            f'{demo}')


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


def how_to_get(path: str) -> str:
    """The commands that make the checkpoint ``path``. A file named after timm's weights
    (``<timm model>.<tag>.pth``, as the recipes name them) comes from the Hugging Face repository
    ``timm/<timm model>.<tag>``; any other name from whichever timm weights the user picks."""
    stem = osp.splitext(osp.basename(path))[0]
    if any(stem.startswith(name + '.') for name in TIMM_NAMES):
        download = f'downloads/{stem}'
        return (f'hf download timm/{stem} model.safetensors --local-dir {download} && '
                f'{CONVERTER} {download}/model.safetensors {path}')
    return (f'{CONVERTER} <a timm CoAtNet model.safetensors> {path} (the weights table in '
            'docs/pretrained-weights.md names each architecture\'s)')


def check_pretrained(cfg: Config) -> None:
    found = list(_pretrained_paths(cfg.get('model')))
    for _, path in found:
        if path and not re.match(r'^[\w+.-]+://', path) and not osp.isfile(path):
            # every init that reads this file: a fine-tuning config also loads its head from it
            keys = ' '.join(f'{key}=None' for key, other in found if other == path)
            raise PreflightError(
                f'pretrained checkpoint {path} not found. Download the timm weights and convert '
                f'them: {how_to_get(path)}; or put there a checkpoint of this project\'s own '
                f'training (e.g. work_dirs/<config>/epoch_<n>.pth); or train from scratch with '
                f'--cfg-options {keys}')


def check_load_from(cfg: Config) -> None:
    path = cfg.get('load_from')
    if path and not re.match(r'^[\w+.-]+://', path) and not osp.isfile(path):
        raise PreflightError(f'checkpoint {path} (load_from / --resume) not found')
