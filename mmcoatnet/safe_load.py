"""Reading checkpoints without executing code from them, and with clear errors for bad files.

torch >= 2.6 loads with ``weights_only=True``: only tensors, containers and allow-listed types are
rebuilt. mmengine's own checkpoints also hold its message hub (``HistoryBuffer`` with numpy arrays)
and numpy scalars; those few types are allowed here, for the one load, and nothing else.
:func:`install_safe_checkpoint_loading` puts these loaders in mmengine's place.
"""
import _compat_pickle
import codecs
import contextlib
import hashlib
import inspect
import os
import os.path as osp
import pickle
import types
from typing import Any, ContextManager, Dict, List, Optional
from urllib.parse import urlparse

import numpy as np
import torch

from .torch_compat import TORCH_VERSION


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


class CheckpointReadError(ValueError):
    """A checkpoint file that cannot be read: truncated, corrupt, or not a checkpoint at all."""


# what torch's weights-only unpickler says of a pickle that asks for code (an unknown opcode, by
# contrast, is a file that is no pickle at all)
_UNSAFE_MARKERS = ('Unsupported global', 'unrecognized function', 'only HistoryBuffer',
                   'Unsupported class')  # the last: torch < 2.4's weights-only wording


def _reason(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines()
             if any(marker in line for marker in _UNSAFE_MARKERS)]
    return lines[0] if lines else str(error).strip().splitlines()[-1]


def _unreadable(path: str, what: str, error: Exception) -> CheckpointReadError:
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return CheckpointReadError(f'cannot read checkpoint {path}: {what} ({detail}). The file may be '
                               'truncated or corrupt: download or save it again')


def _global_name(entry: Any) -> tuple:
    """(module.name, object) of an allow-list entry: an object, or (object, 'module.name')."""
    if isinstance(entry, tuple):
        return entry[1], entry[0]
    return f'{entry.__module__}.{entry.__qualname__}', entry


def _restricted_pickle_module(allowed: List[Any]) -> types.ModuleType:
    """A ``pickle_module`` for ``torch.load`` whose unpickler resolves only torch's own weights-only
    globals and ``allowed``: for torch < 2.5, whose weights-only unpickler has no safe_globals
    (2.4 only the global add_safe_globals; 2.1-2.3 no allow-list, and no object built but tensors
    and dicts)."""
    from torch._weights_only_unpickler import _get_allowed_globals
    names = dict(_get_allowed_globals())
    names['_codecs.encode'] = codecs.encode  # how protocol 2 pickles bytes (numpy arrays' data)
    names.update(_global_name(entry) for entry in allowed)

    class RestrictedUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            # protocol 2's Python 2 names (__builtin__.getattr), mapped as pickle's find_class does
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
            found = names.get(f'{module}.{name}')
            if found is None:
                raise pickle.UnpicklingError(f'Unsupported global: GLOBAL {module}.{name} is not '
                                             'an allowed global')
            return found

    module = types.ModuleType('mmcoatnet_restricted_pickle')
    module.Unpickler = RestrictedUnpickler
    module.load = lambda file, **kwargs: RestrictedUnpickler(file, **kwargs).load()
    return module


def allowing_globals(allowed: List[Any]) -> ContextManager:
    """``torch.serialization.safe_globals(allowed)`` (torch >= 2.5); on older torch a no-op, as
    :func:`safe_torch_load` then allows them itself."""
    if TORCH_VERSION >= '2.5':
        return torch.serialization.safe_globals(allowed)
    return contextlib.nullcontext()


def safe_torch_load(path: str, map_location: Any = 'cpu') -> Any:
    """``torch.load`` with ``weights_only=True`` and mmengine's checkpoint types allowed (on
    torch < 2.5: through a pickle unpickler restricted to the same types)."""
    try:
        if TORCH_VERSION < '2.5':
            return torch.load(path, map_location=map_location, weights_only=False,
                              pickle_module=_restricted_pickle_module(mmengine_checkpoint_globals()))
        with allowing_globals(mmengine_checkpoint_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if not any(marker in str(error) for marker in _UNSAFE_MARKERS):
            raise _unreadable(path, 'not a readable torch checkpoint', error) from None
        raise UnsafeCheckpointError(
            f'refusing to load {path}: it needs Python objects other than tensors and '
            f'mmengine state to be unpickled, which could run arbitrary code ({_reason(error)}). '
            'If you trust the file, re-save its tensors only, e.g. '
            'torch.save(torch.load(path, weights_only=False)["state_dict"], new_path), '
            'or convert it to .safetensors') from None
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        raise _unreadable(path, 'not a readable torch checkpoint', error) from None


def load_local_checkpoint(filename: str, map_location: Any = None) -> Any:
    """mmengine's loader for local files, made safe: ``.safetensors``, or a weights-only pickle."""
    filename = osp.expanduser(filename)
    if osp.isdir(filename):
        raise IsADirectoryError(f'checkpoint {filename} is a directory; give the path of the '
                                '.pth or .safetensors file in it')
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if filename.endswith('.safetensors'):
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(filename)  # on the CPU; mmengine moves the tensors where the model is
        except (SafetensorError, OSError, ValueError) as error:
            raise _unreadable(filename, 'not a valid safetensors file', error) from None
    return safe_torch_load(filename, map_location=map_location)


def url_cache_path(url: str, model_dir: Optional[str] = None) -> str:
    """Where a URL's download is kept: a folder per URL (a hash of the whole URL), so two URLs that
    end in the same file name (Hugging Face's ``.../model.safetensors``) never share a download."""
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    name = osp.basename(urlparse(url).path) or 'checkpoint'
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return osp.join(model_dir, 'mmcoatnet-urls', digest, name)


def load_url_checkpoint(url: str, model_dir: Optional[str] = None, map_location: Any = None,
                        progress: bool = False, **_ignored) -> Any:
    """mmengine's ``load_url`` made safe and keyed by the whole URL: download once, then
    :func:`load_local_checkpoint`."""
    path = url_cache_path(url, model_dir)
    if not osp.exists(path):
        os.makedirs(osp.dirname(path), exist_ok=True)
        torch.hub.download_url_to_file(url, path, progress=progress)  # via a temporary file
    return load_local_checkpoint(path, map_location=map_location)


# mmengine up to this release calls torch.load without weights_only (and torch's hub with
# weights_only=False for URLs): the release after it is trusted only if its local loader asks for
# it and its checkpoint module never falls back to a full unpickling. OneDL's fork (onedl-mmengine
# 0.10.12, which imports as mmengine) does fall back: its loaders try weights_only=True and, when
# that refuses a checkpoint, load it again with weights_only=False, running whatever it holds.
LAST_MMENGINE_WITHOUT_WEIGHTS_ONLY = '0.10.7'
_replaced: Dict[str, Any] = {}


def mmengine_loads_weights_only() -> bool:
    import mmengine
    from mmengine.runner import checkpoint
    from mmengine.utils import digit_version
    if digit_version(mmengine.__version__) <= digit_version(LAST_MMENGINE_WITHOUT_WEIGHTS_ONLY):
        return False
    if 'weights_only=False' in inspect.getsource(checkpoint):  # a fallback (OneDL's fork)
        return False
    return 'weights_only' in inspect.getsource(checkpoint.load_from_local)


def install_safe_checkpoint_loading() -> bool:
    """Make mmengine read checkpoints safely, everywhere it reads them (``init_cfg``, ``load_from``,
    ``--resume``, ``init_detector``, URLs): its local-file scheme becomes
    :func:`load_local_checkpoint` and its ``load_url`` (http(s), ``torchvision://``,
    ``openmmlab://``, ``mmcls://``) :func:`load_url_checkpoint`. Returns whether it replaced
    them; it does nothing when mmengine already loads weights-only. Undone by
    :func:`uninstall_safe_checkpoint_loading`."""
    if _replaced or mmengine_loads_weights_only():
        return bool(_replaced)
    from mmengine.runner import checkpoint
    _replaced['local'] = checkpoint.CheckpointLoader._schemes['']
    _replaced['load_url'] = checkpoint.load_url
    checkpoint.CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint,
                                                force=True)
    checkpoint.load_url = load_url_checkpoint
    return True


def uninstall_safe_checkpoint_loading() -> None:
    """Give mmengine back its own loaders (which, with torch >= 2.6, fail on mmengine's own
    checkpoints and load URLs without weights_only)."""
    if not _replaced:
        return
    from mmengine.runner import checkpoint
    checkpoint.CheckpointLoader.register_scheme(prefixes='', loader=_replaced.pop('local'),
                                                force=True)
    checkpoint.load_url = _replaced.pop('load_url')
