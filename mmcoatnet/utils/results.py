"""Results files: every tool that records figures writes them through here, stamped with the torch
version and the date they were measured on."""
import datetime
import json
import os
import os.path as osp
from typing import Callable, Optional


def provenance() -> dict:
    import torch
    return dict(torch=torch.__version__, date=datetime.date.today().isoformat())


def write_json(path: str, data) -> str:
    """Writes ``data`` to ``path`` (folders made as needed); a dict gets :func:`provenance` keys
    it does not already have, first, and keeps the order of its own. Returns ``path``."""
    if isinstance(data, dict):
        data = {**{k: v for k, v in provenance().items() if k not in data}, **data}
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(data, f, indent=1)
        f.write('\n')
    return path


def append_json(path: str, entry: dict, key: Optional[Callable[[dict], object]] = None) -> str:
    """Adds ``entry`` to the JSON list in ``path``; with ``key``, an earlier entry with the same
    key is replaced."""
    entries = []
    if osp.exists(path):
        with open(path) as f:
            entries = json.load(f)
    if key is not None:
        entries = [old for old in entries if key(old) != key(entry)]
    entry = {**provenance(), **entry}
    return write_json(path, entries + [entry])


def default_result_path(tool: str, config: str) -> str:
    """work_dirs/<tool>/<config name>.json"""
    return osp.join('work_dirs', tool, osp.splitext(osp.basename(config))[0] + '.json')
