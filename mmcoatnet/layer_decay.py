"""Layer-wise learning-rate decay for a detector, segmentor or classifier with a CoAtNet backbone.

mmdet's and mmseg's ``LearningRateDecayOptimizerConstructor`` raise NotImplementedError for every
backbone but ConvNeXt and BEiT; this constructor reads CoAtNet's depth from parameter names
(``backbone.stem.*``, ``backbone.stages.<i>.blocks.<j>.*``). It is registered in mmengine's root
registry, so mmdet and mmseg configs both build it by name.
"""
import re
from typing import Dict, List, Optional, Tuple

import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from .models.attention import CachedBiasProvider
from .models.blocks import LayerScale

DECAY_TYPES = ('layer_wise', 'stage_wise')
PARAMWISE_KEYS = ('decay_rate', 'decay_type')
NORM_TYPES = (_BatchNorm, _InstanceNorm, nn.LayerNorm, nn.GroupNorm)
STEM = re.compile(r'backbone\.stem\.')
BLOCK = re.compile(r'backbone\.stages\.(\d+)\.blocks\.(\d+)\.')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class CoAtNetLayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """Scales each parameter's learning rate by ``decay_rate ** (top - depth)``.

    ``paramwise_cfg``:
        decay_rate: the factor per depth step, 0 < decay_rate <= 1.
        decay_type: 'layer_wise' (default): the stem has depth 0 and the blocks of S1-S4, counted
            in order, depths 1..B (B blocks in all). 'stage_wise': the stem has depth 0 and the
            blocks of stage Si depth i. Everything outside the backbone (neck, heads) has the top
            depth, B + 1 or 5, so its learning rate is the optimizer's.

    Biases, norms (BN, SyncBN, LN, GN), relative-position parameters (bias tables, the rmlp MLP)
    and LayerScale get no weight decay, everything else the optimizer's. Frozen parameters are
    left out. One table of the groups (name pattern, lr scale, weight decay) is logged.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        unknown = sorted(set(paramwise_cfg) - set(PARAMWISE_KEYS))
        if unknown:  # e.g. num_layers of a ConvNeXt config: the depths come from the model here
            raise ValueError(f'CoAtNetLayerDecayOptimizerConstructor takes paramwise_cfg keys '
                             f'{PARAMWISE_KEYS}, got unknown {unknown}')
        if 'decay_rate' not in paramwise_cfg:
            raise ValueError('CoAtNetLayerDecayOptimizerConstructor needs paramwise_cfg.decay_rate')
        self.decay_rate = float(paramwise_cfg['decay_rate'])
        if not 0 < self.decay_rate <= 1:
            raise ValueError(f'decay_rate must be in (0, 1], got {self.decay_rate}')
        self.decay_type = paramwise_cfg.get('decay_type', 'layer_wise')
        if self.decay_type not in DECAY_TYPES:
            raise ValueError(f'decay_type is one of {DECAY_TYPES}, got {self.decay_type!r}')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module=None) -> None:
        """Appends one group per (depth, decays) to ``params``. Called once with the whole model;
        ``prefix`` and ``is_dcn_module`` belong to the default constructor's recursion."""
        backbone = getattr(module, 'backbone', None)
        if backbone is None or not hasattr(backbone, 'stem') or not hasattr(backbone, 'stages'):
            raise TypeError(f'CoAtNetLayerDecayOptimizerConstructor needs a model whose backbone '
                            f'is a CoAtNet, got {type(backbone).__name__} in '
                            f'{type(module).__name__}')
        depths = [len(stage.blocks) for stage in backbone.stages]
        top = (sum(depths) if self.decay_type == 'layer_wise' else len(depths)) + 1
        no_decay = no_decay_names(module)
        groups: Dict[Tuple[int, bool], dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            depth = self.depth_of(name, depths, top)
            decays = name not in no_decay
            group = groups.get((depth, decays))
            if group is None:
                scale = self.decay_rate ** (top - depth)
                group = groups[(depth, decays)] = dict(
                    params=[], names=[], depth=depth, lr=self.base_lr * scale, lr_scale=scale,
                    weight_decay=self.base_wd if decays else 0.)
            group['params'].append(param)
            group['names'].append(name)
        ordered = [groups[key] for key in sorted(groups, key=lambda k: (k[0], not k[1]))]
        MMLogger.get_current_instance().info(self.table(ordered, depths, top))
        for group in ordered:
            del group['names'], group['depth']
            if group['weight_decay'] is None:  # none in the optimizer config: its default
                del group['weight_decay']
            params.append(group)

    def depth_of(self, name: str, depths: List[int], top: int) -> int:
        if STEM.match(name):
            return 0
        block = BLOCK.match(name)
        if block:
            stage, index = int(block.group(1)), int(block.group(2))
            if self.decay_type == 'stage_wise':
                return stage + 1
            return sum(depths[:stage]) + index + 1
        if name.startswith('backbone.'):
            raise ValueError(f'{name} is in neither backbone.stem nor a block of '
                             'backbone.stages: no depth for it')
        return top

    def table(self, groups: List[dict], depths: List[int], top: int) -> str:
        """One row per group: name pattern, lr scale, weight decay, number of tensors."""
        rows = [('name pattern', 'lr scale', 'weight decay', 'tensors')]
        for group in groups:
            wd = group['weight_decay']
            rows.append((self.pattern(group['depth'], depths, top, group['names']),
                         f"{group['lr_scale']:.4g}",
                         'optimizer default' if wd is None else f'{wd:g}',
                         str(len(group['names']))))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ['  '.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                 for row in rows]
        lines.insert(1, '  '.join('-' * width for width in widths))
        return (f'CoAtNetLayerDecayOptimizerConstructor: {self.decay_type}, decay_rate '
                f'{self.decay_rate:.4g}, depths 0 (stem) to {top} (outside the backbone; '
                f'blocks per stage {depths}), lr {self.base_lr:g} x scale; no weight decay on '
                'biases, norms, relative-position parameters and LayerScale\n' + '\n'.join(lines))

    def pattern(self, depth: int, depths: List[int], top: int, names: List[str]) -> str:
        """The parameter names at ``depth`` as a pattern (the top: the modules outside the backbone,
        'neck.*, rpn_head.*')."""
        if depth == 0:
            return 'backbone.stem.*'
        if depth == top:
            tops = []
            for name in names:
                if name.split('.')[0] not in tops:
                    tops.append(name.split('.')[0])
            return ', '.join(f'{module}.*' for module in tops)
        if self.decay_type == 'stage_wise':
            return f'backbone.stages.{depth - 1}.*'
        stage = 0
        while depth > depths[stage]:
            depth -= depths[stage]
            stage += 1
        return f'backbone.stages.{stage}.blocks.{depth - 1}.*'


def no_decay_names(model: nn.Module) -> set:
    """Names of the parameters that get no weight decay: biases, norms, relative-position
    parameters (all of a bias provider's), LayerScale."""
    names = {name for name, _ in model.named_parameters() if name.endswith('.bias')}
    for module_name, module in model.named_modules():
        if isinstance(module, (NORM_TYPES, CachedBiasProvider, LayerScale)):
            names.update(f'{module_name}.{name}' for name, _ in module.named_parameters())
    return names
