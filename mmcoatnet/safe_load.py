"""Reading checkpoints without executing code from them.

torch >= 2.6 loads with ``weights_only=True``: only tensors, containers and allow-listed types are
rebuilt. mmengine's own checkpoints also hold its message hub (``HistoryBuffer`` with numpy arrays)
and numpy scalars; those few types are allowed here, for the one load, and nothing else.
"""
import os.path as osp
import pickle
from typing import Any, List

import numpy as np
import torch


def _history_buffer_method(owner: Any, name: str) -> Any:
    """Stands in for ``getattr`` while unpickling: HistoryBuffer pickles its statistics methods as
    getattr(HistoryBuffer, 'mean'); nothing else may be looked up."""
    from mmengine.logging import HistoryBuffer
    method = getattr(HistoryBuffer, name, None) if owner is HistoryBuffer else None
    if not callable(method) or name.startswith('_'):
        raise pickle.UnpicklingError(f'checkpoint asks for attribute {name!r} of {owner!r}; '
                                     'only HistoryBuffer statistics methods are allowed')
    return method


def mmengine_checkpoint_globals() -> List[Any]:
    """The non-tensor types an mmengine checkpoint may hold: its HistoryBuffer (with its statistics
    methods) and numpy arrays, dtypes and scalars (numpy 1 and 2 pickle them differently)."""
    from mmengine.logging import HistoryBuffer
    allowed: List[Any] = [HistoryBuffer, np.ndarray, np.dtype,
                          (_history_buffer_method, 'builtins.getattr')]
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct, scalar
    allowed += [_reconstruct, scalar]
    allowed += [type(np.dtype(name)) for name in (
        'bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64',
        'float16', 'float32', 'float64', 'complex64', 'complex128', 'object', 'U', 'S')]
    return allowed


class UnsafeCheckpointError(ValueError):
    pass


def _reason(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if 'Unsupported global' in line
             or 'unrecognized function' in line or 'only HistoryBuffer' in line]
    return lines[0] if lines else str(error).strip().splitlines()[-1]


def safe_torch_load(path: str, map_location: Any = 'cpu') -> Any:
    """``torch.load`` with ``weights_only=True`` and mmengine's checkpoint types allowed."""
    try:
        with torch.serialization.safe_globals(mmengine_checkpoint_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(
            f'refusing to load {path}: it needs Python objects other than tensors and '
            f'mmengine state to be unpickled, which could run arbitrary code ({_reason(error)}). '
            'If you trust the file, re-save its tensors only, e.g. '
            'torch.save(torch.load(path, weights_only=False)["state_dict"], new_path), '
            'or convert it to .safetensors') from None


def load_local_checkpoint(filename: str, map_location: Any = None) -> Any:
    """mmengine's loader for local files, made safe: ``.safetensors``, or a weights-only pickle."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if filename.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(filename)  # on the CPU; mmengine moves the tensors where the model is
    return safe_torch_load(filename, map_location=map_location)


def use_safe_local_loader() -> None:
    """Route mmengine's local checkpoint loading (``load_from``, ``--resume``, ``init_detector``)
    through :func:`load_local_checkpoint`; mmengine 0.10.7 calls ``torch.load`` without
    ``weights_only``, which torch >= 2.6 turns into a failing weights-only load of its own files."""
    from mmengine.runner import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)
