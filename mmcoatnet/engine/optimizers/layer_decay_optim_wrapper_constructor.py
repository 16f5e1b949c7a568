"""Layer-wise learning-rate decay and the no-weight-decay rule for a detector, segmentor or
classifier with a CoAtNet backbone.

mmdet's and mmseg's ``LearningRateDecayOptimizerConstructor`` raise NotImplementedError for every
backbone but ConvNeXt and BEiT. This one asks the backbone, as mmpretrain's constructor asks its
backbones: ``get_layer_depth`` for each parameter's depth and ``no_weight_decay`` for the names
that take no weight decay. Registered in mmengine's root registry, so mmdet, mmseg and mmpretrain
configs all build it by name.
"""
import os.path as osp
from typing import Dict, List, Optional, Tuple

import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

PARAMWISE_KEYS = ('decay_rate', 'decay_type', 'custom_keys')
CUSTOM_KEY_FIELDS = ('lr_mult', 'decay_mult')  # what the query-based protocols' custom_keys set


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class CoAtNetLayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """Scales each parameter's learning rate by ``decay_rate ** (top - depth)``, depths as the
    backbone's ``get_layer_depth`` gives them.

    ``paramwise_cfg``:
        decay_rate: the factor per depth step, 0 < decay_rate <= 1; 1 (the default) decays no
            learning rate and keeps only the weight-decay rule below.
        decay_type: 'layer_wise' (default): the stem has depth 0 and the blocks of S1-S4, counted
            in order, depths 1..B (B blocks in all). 'stage_wise': the stem has depth 0 and the
            blocks of stage Si depth i. Everything outside the backbone (neck, heads) has the top
            depth, B + 1 or 5, so its learning rate is the optimizer's.
        custom_keys: ``{name part: dict(lr_mult=..., decay_mult=...)}`` as mmengine's default
            constructor reads it (the longest key found in a parameter's name applies), on top of
            the decay: e.g. DETR-style protocols' ``'backbone': dict(lr_mult=0.1)`` and
            ``'query_embed': dict(decay_mult=0.)``.

    One-dimensional parameters (biases, norms, LayerScale) and the backbone's ``no_weight_decay()``
    (relative-position tables and MLPs) get no weight decay, everything else the optimizer's.
    Frozen parameters are left out. One table of the groups (name pattern, lr scale, weight decay)
    is logged.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        unknown = sorted(set(paramwise_cfg) - set(PARAMWISE_KEYS))
        if unknown:  # e.g. num_layers of a ConvNeXt config: the depths come from the model here
            raise ValueError(f'CoAtNetLayerDecayOptimizerConstructor takes paramwise_cfg keys '
                             f'{PARAMWISE_KEYS}, got unknown {unknown}')
        self.decay_rate = float(paramwise_cfg.get('decay_rate', 1.0))
        if not 0 < self.decay_rate <= 1:
            raise ValueError(f'decay_rate must be in (0, 1], got {self.decay_rate}')
        self.decay_type = paramwise_cfg.get('decay_type', 'layer_wise')
        self.custom_keys = dict(paramwise_cfg.get('custom_keys', {}))
        for key, multipliers in self.custom_keys.items():
            unknown = sorted(set(multipliers) - set(CUSTOM_KEY_FIELDS))
            if unknown:
                raise ValueError(f'custom_keys[{key!r}] takes {CUSTOM_KEY_FIELDS}, got unknown '
                                 f'{unknown}')
        # mmengine's order: longer keys first, then alphabetical; the first found applies
        self.custom_key_order = sorted(sorted(self.custom_keys), key=len, reverse=True)
        # both keys, always: the default constructor skips add_params for an empty paramwise_cfg
        super().__init__(optim_wrapper_cfg,
                         dict(decay_rate=self.decay_rate, decay_type=self.decay_type))

    def custom_key_of(self, name: str) -> Optional[str]:
        """The custom key that applies to the parameter ``name``, or None."""
        return next((key for key in self.custom_key_order if key in name), None)

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module=None) -> None:
        """Appends one group per (depth, decays) to ``params``. Called once with the whole model;
        ``prefix`` and ``is_dcn_module`` belong to the default constructor's recursion."""
        backbone = getattr(module, 'backbone', None)
        if not (hasattr(backbone, 'get_layer_depth') and hasattr(backbone, 'no_weight_decay')):
            raise TypeError(f'CoAtNetLayerDecayOptimizerConstructor needs a model whose backbone '
                            f'is a CoAtNet, got {type(backbone).__name__} in '
                            f'{type(module).__name__}')
        no_decay = {f'backbone.{name}' for name in backbone.no_weight_decay()}
        groups: Dict[Tuple[int, bool, str], dict] = {}
        top = 0
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            depth, num_depths = backbone.get_layer_depth(name, 'backbone.', self.decay_type)
            top = num_depths - 1
            key = self.custom_key_of(name)
            multipliers = self.custom_keys.get(key, {})
            decay_mult = multipliers.get('decay_mult', 1.)
            decays = param.ndim > 1 and name not in no_decay and decay_mult != 0
            group = groups.get((depth, decays, key or ''))
            if group is None:
                scale = self.decay_rate ** (top - depth) * multipliers.get('lr_mult', 1.)
                weight_decay = 0.
                if decays:
                    weight_decay = None if self.base_wd is None else self.base_wd * decay_mult
                group = groups[(depth, decays, key or '')] = dict(
                    params=[], names=[], lr=self.base_lr * scale, lr_scale=scale,
                    weight_decay=weight_decay)
            group['params'].append(param)
            group['names'].append(name)
        ordered = [groups[key] for key in sorted(groups, key=lambda k: (k[0], not k[1], k[2]))]
        MMLogger.get_current_instance().info(self.table(ordered, top))
        for group in ordered:
            del group['names']
            if group['weight_decay'] is None:  # none in the optimizer config: its default
                del group['weight_decay']
            params.append(group)

    def table(self, groups: List[dict], top: int) -> str:
        """One row per group: name pattern, lr scale, weight decay, number of tensors."""
        rows = [('name pattern', 'lr scale', 'weight decay', 'tensors')]
        for group in groups:
            wd = group['weight_decay']
            rows.append((name_pattern(group['names']), f"{group['lr_scale']:.4g}",
                         'optimizer default' if wd is None else f'{wd:g}',
                         str(len(group['names']))))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ['  '.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                 for row in rows]
        lines.insert(1, '  '.join('-' * width for width in widths))
        return (f'CoAtNetLayerDecayOptimizerConstructor: {self.decay_type}, decay_rate '
                f'{self.decay_rate:.4g}, depths 0 (stem) to {top} (outside the backbone), '
                f'lr {self.base_lr:g} x scale; no weight decay on biases, norms, LayerScale and '
                'relative-position parameters'
                + (f'; custom_keys {self.custom_keys}' if self.custom_keys else '')
                + '\n' + '\n'.join(lines))


def name_pattern(names: List[str]) -> str:
    """The parameter names of a group as a pattern: their longest common module path
    ('backbone.stages.2.blocks.6.*'), or the top modules when they share none
    ('neck.*, rpn_head.*')."""
    common = osp.commonprefix([name.split('.')[:-1] for name in names])
    if common:
        return '.'.join(common) + '.*'
    tops = list(dict.fromkeys(name.split('.')[0] for name in names))
    return ', '.join(f'{module}.*' for module in tops)
