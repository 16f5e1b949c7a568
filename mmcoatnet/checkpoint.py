"""The one place that adapts a checkpoint to a CoAtNet backbone.

read (safely: ``.safetensors`` or ``torch.load(weights_only=True)``) -> unwrap (``state_dict`` /
``model`` wrappers, ``module.`` and ``backbone.`` prefixes) -> rename timm's keys when it is a timm
checkpoint -> resize relative-bias tables to the model's pre-training size -> compare with the model
(one summary of missing, unexpected and mismatched keys; an error when the checkpoint belongs to
another architecture) -> ``load_state_dict``.
"""
import functools
import os
import os.path as osp
import re
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch
from mmengine.logging import print_log

from .models.rel_pos import resize_bias_table
from .safe_load import load_local_checkpoint

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


def read_checkpoint(path: str) -> dict:
    """A checkpoint as a dict of tensors and containers: ``.safetensors`` or a pickle read safely.
    URLs are downloaded once into torch's hub cache."""
    if re.match(r'^https?://', path):
        cache = osp.join(torch.hub.get_dir(), 'checkpoints')
        os.makedirs(cache, exist_ok=True)
        local = osp.join(cache, osp.basename(path.split('?')[0]))
        if not osp.exists(local):
            torch.hub.download_url_to_file(path, local)
        path = local
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'checkpoint {path} not found; convert a timm checkpoint with '
            f'tools/model_converters/timm2mmcoatnet.py SRC {path}')
    return load_local_checkpoint(path, map_location='cpu')


def unwrap_state_dict(checkpoint: dict) -> StateDict:
    """The backbone's tensors from a bare state dict or an mmengine/mmdet/mmseg/classifier checkpoint."""
    state = checkpoint
    for wrapper in ('state_dict', 'model', 'module'):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    if any(k.startswith('backbone.') for k in state):  # a whole detector / segmentor / classifier
        state = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    return state


def is_timm_coatnet(state: StateDict) -> bool:
    return any(marker in key for key in state for marker in _TIMM_MARKERS) or any(
        key.endswith('attn.qkv.weight') and value.dim() == 4 for key, value in state.items())


def _transformer_stages(state: StateDict) -> set:
    return {int(m.group(1)) for k in state for m in [re.match(r'stages\.(\d+)\.blocks\.\d+\.attn\.', k)] if m}


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
            local = local.replace('norm1.norm.', 'norm1.').replace('shortcut.expand.', 'shortcut_proj.')
            if local == 'attn.rel_pos.relative_position_bias_table':
                local, value = 'attn.rel_pos.table', _table_from_timm(value)
            elif value.dim() == 4 and value.shape[-2:] == (1, 1):  # 1x1 conv -> linear
                value = value.flatten(1)
            key = prefix + local
        converted[key] = value
    return converted


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


@functools.lru_cache(maxsize=None)
def arch_signature(name: str) -> Dict[str, tuple]:
    from .models.backbone import CoAtNet
    with torch.device('meta'):
        model = CoAtNet(arch=name)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def guess_architectures(state: StateDict) -> List[str]:
    """Names of the table architectures whose keys and shapes (bias tables aside) equal the state's."""
    from .models.archs import ARCH_SETTINGS

    def comparable(signature):
        return {k: v for k, v in signature.items() if not k.endswith('rel_pos.table')}

    ours = comparable({k: tuple(v.shape) for k, v in state.items()})
    return [name for name in ARCH_SETTINGS if comparable(arch_signature(name)) == ours]


def adapt_state_dict(checkpoint: dict, model_state: StateDict) -> tuple:
    """(state dict in mmcoatnet's names and the model's table sizes, source format, resized keys)."""
    state = unwrap_state_dict(checkpoint)
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


def load_pretrained(model: torch.nn.Module, checkpoint_path: str,
                    logger: Optional[str] = 'current') -> LoadReport:
    """Load a timm or mmcoatnet checkpoint into a CoAtNet backbone, and report what did not fit."""
    model_state = model.state_dict()
    state, source, resized = adapt_state_dict(read_checkpoint(checkpoint_path), model_state)
    loaded, mismatched = [], []
    for key, value in state.items():
        if key in model_state:
            if tuple(value.shape) == tuple(model_state[key].shape):
                loaded.append(key)
            else:
                mismatched.append(f'{key}: {tuple(value.shape)} vs {tuple(model_state[key].shape)}')
    missing = [k for k in model_state if k not in state]
    unexpected = [k for k in state if k not in model_state]

    configured = getattr(model, 'arch_name', None) or 'a custom architecture'
    guesses = guess_architectures(state)
    structural = [k for k in missing + unexpected + [m.split(':')[0] for m in mismatched]
                  if k.startswith(('stem.', 'stages.')) and not k.endswith('num_batches_tracked')]
    if (guesses and getattr(model, 'arch_name', None) not in guesses and structural) or \
            len(loaded) < 0.5 * len(model_state):
        looks_like = (f"the checkpoint's keys look like {' / '.join(repr(g) for g in guesses)}"
                      if guesses else
                      f'the checkpoint matches no CoAtNet architecture (its keys: '
                      f'{_describe(sorted(state))})')
        raise CheckpointMismatchError(
            f'{checkpoint_path} does not fit the configured backbone {configured!r}: {looks_like}; '
            f'{len(loaded)} of {len(model_state)} model tensors would load. '
            f'Set arch to the checkpoint\'s architecture or use a checkpoint made for {configured!r}.')

    model.load_state_dict({k: state[k] for k in loaded}, strict=False)
    report = LoadReport(source, loaded, missing, unexpected, mismatched, resized)
    lines = [f'loaded {len(loaded)}/{len(model_state)} tensors from {checkpoint_path} ({source} format)']
    for title, names in (('missing (left at their initial values)', missing),
                         ('unexpected (ignored)', unexpected),
                         ('shape mismatch (ignored)', mismatched),
                         ('bias tables resized', resized)):
        if names:
            lines.append(f'  {title}: {_describe(names)}')
    print_log('\n'.join(lines), logger=logger)
    return report
