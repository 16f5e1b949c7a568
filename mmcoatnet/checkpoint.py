"""The one place that adapts a checkpoint to a CoAtNet backbone.

read (through mmengine's ``CheckpointLoader``, every scheme it knows, with the safe loaders of
:mod:`mmcoatnet.safe_load`) -> unwrap (``state_dict`` / ``model`` wrappers, ``module.`` prefixes,
mmengine's ``prefix=`` or else a ``backbone.`` prefix) -> rename timm's keys when it is a timm
checkpoint -> resize relative-bias tables to the model's pre-training size -> compare with the model
(one summary of missing, unexpected and mismatched keys; an error when the checkpoint belongs to
another architecture) -> ``load_state_dict``.

It reads the backbone's state dict, ``arch_name`` and ``architecture_signatures()``, and registers
itself under the initializer name the backbone hands its ``Pretrained`` entries to
(``PRETRAINED_INITIALIZER``): the tie runs one way, this module importing the backbone.
"""
import os.path as osp
import re
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence

import torch
from mmengine.logging import print_log
from mmengine.registry import WEIGHT_INITIALIZERS
from mmengine.runner import CheckpointLoader

from .models.backbone import PRETRAINED_INITIALIZER, CoAtNet
from .models.rel_pos import resize_bias_table
from .safe_load import allowing_globals, mmengine_checkpoint_globals

StateDict = Dict[str, torch.Tensor]

# A timm CoAtNet stores attention and MLP weights as 1x1 convs and the bias table as (L, heads).
_TIMM_MARKERS = ('relative_position_bias_table', 'norm1.norm.')
_CLASSIFIER_PREFIXES = ('head.', 'norm.', 'fc.', 'classifier.')


class CheckpointMismatchError(ValueError):
    pass


class LoadReport(NamedTuple):
    source: str                 # 'timm' or 'mmcoatnet'
    loaded: List[str]
    missing: List[str]
    unexpected: List[str]
    mismatched: List[str]       # 'key: checkpoint shape vs model shape'
    resized: List[str]          # bias tables resized to the model's pre-training size


def read_checkpoint(path: str, logger: Optional[str] = 'current') -> dict:
    """A checkpoint as a dict of tensors and containers, read by mmengine's ``CheckpointLoader``
    (local files, http(s), ``openmmlab://``, the file backends' schemes) with the project's safe
    loaders in place; backends that call ``torch.load`` themselves get mmengine's types allowed."""
    if '://' not in path:
        if not osp.exists(osp.expanduser(path)):
            raise FileNotFoundError(
                f'checkpoint {path} not found; convert a timm checkpoint with '
                f'tools/model_converters/timm2mmcoatnet.py SRC {path}')
    with allowing_globals(mmengine_checkpoint_globals()):
        return CheckpointLoader.load_checkpoint(path, map_location='cpu', logger=logger)


def unwrap_state_dict(checkpoint: dict, prefix: Optional[str] = None,
                      source: str = 'the checkpoint') -> StateDict:
    """The backbone's tensors from a bare state dict or an mmengine/mmdet/mmseg/classifier
    checkpoint. With ``prefix`` (mmengine's ``init_cfg`` argument) only the keys under it, prefix
    removed; without, a ``backbone.`` prefix is removed when there is one."""
    state = checkpoint
    for wrapper in ('state_dict', 'model', 'module'):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        selected = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not selected:
            tops = sorted({k.split('.')[0] + '.' for k in state})
            raise CheckpointMismatchError(f'{source} has no tensors under prefix {prefix!r}; its '
                                          f'keys start with {_describe(tops)}')
        return selected
    if any(k.startswith('backbone.') for k in state):  # a whole detector / segmentor / classifier
        state = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    return state


def is_timm_coatnet(state: StateDict) -> bool:
    return any(marker in key for key in state for marker in _TIMM_MARKERS) or any(
        key.endswith('attn.qkv.weight') and value.dim() == 4 for key, value in state.items())


def _transformer_stages(state: StateDict) -> set:
    pattern = re.compile(r'stages\.(\d+)\.blocks\.\d+\.attn\.')
    return {int(m.group(1)) for k in state for m in [pattern.match(k)] if m}


def convert_timm_state_dict(state: StateDict) -> StateDict:
    """timm's maxxvit CoAtNet keys and layouts -> mmcoatnet's. Classifier tensors are dropped."""
    transformer_stages = _transformer_stages(state)
    converted = {}
    for key, value in state.items():
        if key.startswith(_CLASSIFIER_PREFIXES):
            continue
        match = re.match(r'stages\.(\d+)\.blocks\.\d+\.(.*)', key)
        if match and int(match.group(1)) in transformer_stages:
            local = match.group(2)
            prefix = key[:len(key) - len(local)]
            bn_norm = re.match(r'(norm[12])\.(?:norm\.)?(weight|bias|running_mean|running_var|'
                               r'num_batches_tracked)$', local)
            if bn_norm and _is_bn(state, key):
                local = f'{bn_norm.group(1)}.bn.{bn_norm.group(2)}'
            local = local.replace('norm1.norm.', 'norm1.')
            local = local.replace('shortcut.expand.', 'shortcut_proj.')
            if local == 'attn.rel_pos.relative_position_bias_table':
                local, value = 'attn.rel_pos.table', _table_from_timm(value)
            elif value.dim() == 4 and value.shape[-2:] == (1, 1):  # 1x1 conv -> linear
                value = value.flatten(1)
            key = prefix + local
        converted[key] = value
    return converted


def timm_classifier_head(state: StateDict) -> tuple:
    """timm's classifier (the final ``norm`` over channels, then ``head.fc``) in the names of
    mmpretrain's ``ImageClassifier`` with a ``CoAtNetClsHead``, and that head's ``final_norm``:
    'BN', 'LN', or None when the checkpoint has no final norm."""
    head = {f'head.{k}': v for k, v in state.items() if k.startswith('norm.')}
    head.update({k: v for k, v in state.items() if k.startswith('head.fc.')})
    final_norm = 'BN' if 'norm.running_mean' in state else 'LN' if 'norm.weight' in state else None
    return head, final_norm


def _is_bn(state: StateDict, key: str) -> bool:
    stem = key.rsplit('.', 1)[0]
    return f'{stem}.running_mean' in state


def _table_from_timm(table: torch.Tensor) -> torch.Tensor:
    """(L, heads) with L = (2H-1)^2 -> (heads, 2H-1, 2H-1); timm's CoAtNets are square."""
    side = int(round(table.shape[0] ** 0.5))
    if side * side != table.shape[0]:
        raise CheckpointMismatchError(f'bias table of {table.shape[0]} entries is not square')
    return table.t().reshape(table.shape[1], side, side).contiguous()


def resize_tables(state: StateDict, model_shapes: Dict[str, tuple]) -> List[str]:
    """Resize bias tables in place to the model's table size (same heads, other pre-training size),
    with the interpolation the run-time path uses."""
    resized = []
    for key, value in list(state.items()):
        target = model_shapes.get(key)
        if (key.endswith('rel_pos.table') and target is not None and value.dim() == 3
                and value.shape[0] == target[0] and tuple(value.shape) != tuple(target)):
            feat_size = ((target[1] + 1) // 2, (target[2] + 1) // 2)
            state[key] = resize_bias_table(value.float(), feat_size).to(value.dtype)
            resized.append(f'{key}: {tuple(value.shape)} -> {tuple(target)}')
    return resized


def guess_architectures(state: StateDict, signatures: Mapping[str, Dict[str, tuple]]) -> List[str]:
    """Names of the architectures (``signatures``: name -> key shapes, as the backbone's
    ``architecture_signatures()`` gives them) whose keys and shapes, bias tables aside, equal the
    state's."""

    def comparable(signature):
        return {k: tuple(v) for k, v in signature.items() if not k.endswith('rel_pos.table')}

    ours = comparable({k: tuple(v.shape) for k, v in state.items()})
    return [name for name, signature in signatures.items() if comparable(signature) == ours]


def adapt_state_dict(checkpoint: dict, model_state: StateDict, prefix: Optional[str] = None,
                     source: str = 'the checkpoint') -> tuple:
    """(state dict in mmcoatnet's names and the model's table sizes, source format, resized
    keys)."""
    state = unwrap_state_dict(checkpoint, prefix, source)
    source = 'timm' if is_timm_coatnet(state) else 'mmcoatnet'
    if source == 'timm':
        state = convert_timm_state_dict(state)
    else:
        state = {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_PREFIXES)}
    resized = resize_tables(state, {k: tuple(v.shape) for k, v in model_state.items()})
    return state, source, resized


def _describe(names: Sequence[str], limit: int = 8) -> str:
    shown = ', '.join(names[:limit])
    return shown + (f', ... ({len(names)} in all)' if len(names) > limit else '')


def load_pretrained(model: CoAtNet, checkpoint_path: str, prefix: Optional[str] = None,
                    logger: Optional[str] = 'current') -> LoadReport:
    """Load a timm or mmcoatnet checkpoint (or the part under ``prefix``) into a CoAtNet backbone,
    and report what did not fit."""
    model_state = model.state_dict()
    state, source, resized = adapt_state_dict(read_checkpoint(checkpoint_path, logger), model_state,
                                              prefix, checkpoint_path)
    loaded, mismatched = [], []
    for key, value in state.items():
        if key in model_state:
            if tuple(value.shape) == tuple(model_state[key].shape):
                loaded.append(key)
            else:
                mismatched.append(f'{key}: {tuple(value.shape)} vs {tuple(model_state[key].shape)}')
    missing = [k for k in model_state if k not in state]
    unexpected = [k for k in state if k not in model_state]

    configured = model.arch_name or 'a custom architecture'
    guesses = guess_architectures(state, CoAtNet.architecture_signatures())
    structural = [k for k in missing + unexpected + [m.split(':')[0] for m in mismatched]
                  if k.startswith(('stem.', 'stages.')) and not k.endswith('num_batches_tracked')]
    if (guesses and model.arch_name not in guesses and structural) or \
            len(loaded) < 0.5 * len(model_state):
        looks_like = (f"the checkpoint's keys look like {' / '.join(repr(g) for g in guesses)}"
                      if guesses else
                      f'the checkpoint matches no CoAtNet architecture (its keys: '
                      f'{_describe(sorted(state))})')
        raise CheckpointMismatchError(
            f'{checkpoint_path} does not fit the configured backbone {configured!r}: {looks_like}; '
            f'{len(loaded)} of {len(model_state)} model tensors would load. '
            f'Set arch to the checkpoint\'s architecture or use a checkpoint made for '
            f'{configured!r}.')

    model.load_state_dict({k: state[k] for k in loaded}, strict=False)
    report = LoadReport(source, loaded, missing, unexpected, mismatched, resized)
    lines = [f'loaded {len(loaded)}/{len(model_state)} tensors from {checkpoint_path} '
             f'({source} format)']
    for title, names in (('missing (left at their initial values)', missing),
                         ('unexpected (ignored)', unexpected),
                         ('shape mismatch (ignored)', mismatched),
                         ('bias tables resized', resized)):
        if names:
            lines.append(f'  {title}: {_describe(names)}')
    print_log('\n'.join(lines), logger=logger)
    return report


@WEIGHT_INITIALIZERS.register_module(name=PRETRAINED_INITIALIZER)
class CoAtNetPretrainedInit:
    """mmengine's ``Pretrained`` initializer for CoAtNet: the backbone hands its ``Pretrained``
    ``init_cfg`` entries (dict or list form) here, with mmengine's ``checkpoint`` and ``prefix``
    arguments, so every one goes through :func:`load_pretrained`."""

    def __init__(self, checkpoint: str, prefix: Optional[str] = None, map_location: str = 'cpu'):
        self.checkpoint = checkpoint
        self.prefix = prefix
        self.map_location = map_location  # tensors are read on the CPU and copied into the model

    def __call__(self, module: CoAtNet) -> None:
        load_pretrained(module, self.checkpoint, prefix=self.prefix)

    def _get_init_info(self) -> str:
        return f'{self.__class__.__name__}: load from {self.checkpoint}'
