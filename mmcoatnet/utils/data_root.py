"""``--data-root``: every dataset and evaluator path of a config moved to another root at once.

mmdet's configs write the evaluator's annotation file as ``data_root + 'annotations/...'``, a
string fixed when the config is read, so setting the datasets' ``data_root`` alone leaves the
evaluator reading the old root's annotations. Here every path under the config's old root (the
datasets' ``data_root``) moves: datasets of the train, val and test loaders (wrapped ones
included) and the val and test evaluators' files.
"""
import os.path as osp
from typing import Iterator, List, Tuple

from .errors import ToolError

SPLITS = ('train', 'val', 'test')
EVALUATOR_PATH_KEYS = ('ann_file',)  # mmdet's CocoMetric, LVISMetric, CityScapesMetric, ...


def datasets(node) -> Iterator[dict]:
    """The innermost dataset configs of a (possibly wrapped: RepeatDataset, ConcatDataset,
    ClassBalancedDataset, ...) dataset config."""
    if isinstance(node, (list, tuple)):
        for item in node:
            yield from datasets(item)
    elif isinstance(node, dict):
        inner = node.get('dataset', node.get('datasets'))
        if inner is not None:
            yield from datasets(inner)
        else:
            yield node


def evaluators(cfg, splits=('val', 'test')) -> Iterator[dict]:
    """The metric configs of the splits' evaluators (an evaluator may be a list of metrics)."""
    for split in splits:
        evaluator = cfg.get(f'{split}_evaluator')
        for metric in evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]:
            if isinstance(metric, dict):
                yield metric


def config_data_roots(cfg) -> List[str]:
    """The distinct ``data_root`` values of the config's datasets, normalised (no trailing /)."""
    roots = []
    for split in SPLITS:
        loader = cfg.get(f'{split}_dataloader')
        for dataset in datasets(loader.get('dataset') if loader else None):
            root = dataset.get('data_root')
            if root and osp.normpath(root) not in roots:
                roots.append(osp.normpath(root))
    return roots


def moved(path: str, old_root: str, new_root: str) -> str:
    """``path`` with the leading ``old_root`` replaced by ``new_root``; other paths unchanged."""
    normal = osp.normpath(path)
    if normal == old_root:
        return new_root
    if normal.startswith(old_root + osp.sep):
        return osp.join(new_root, osp.relpath(normal, old_root))
    return path


def set_data_root(cfg, new_root: str) -> List[Tuple[str, str]]:
    """Moves every dataset ``data_root`` and evaluator path under the config's data root to
    ``new_root``; returns the (old, new) paths changed. Raises :class:`ToolError` when the config
    has no data root, or several (then each must be set with --cfg-options)."""
    roots = config_data_roots(cfg)
    if len(roots) != 1:
        raise ToolError(
            f'--data-root moves the one data_root of the config\'s datasets, but it has '
            f'{len(roots)}: {roots or "none"}; set each with --cfg-options instead (e.g. '
            'train_dataloader.dataset.data_root=DIR val_evaluator.ann_file=FILE)')
    old_root, new_root = roots[0], osp.normpath(new_root)
    changes, seen = [], set()

    def move(container: dict, key: str) -> None:
        value = container.get(key)
        if not isinstance(value, str) or (id(container), key) in seen:
            return
        seen.add((id(container), key))
        new = moved(value, old_root, new_root)
        if new != value:
            container[key] = new
            changes.append((value, new))

    for split in SPLITS:
        loader = cfg.get(f'{split}_dataloader')
        for dataset in datasets(loader.get('dataset') if loader else None):
            move(dataset, 'data_root')
    for metric in evaluators(cfg):
        for key in EVALUATOR_PATH_KEYS:
            move(metric, key)
    return changes
