"""Multiply-accumulates and parameters of a config's whole detector or segmentor, with the
backbone's share and the attention's share, counted as the papers count them.

    python tools/analysis_tools/get_flops.py CONFIG [--shape H W] [--proposals 1000]
        [--out docs/results/flops.json] [--cfg-options K=V ...]
    python tools/analysis_tools/get_flops.py --derive-only docs/results/flops.json

Defaults: 800x1280 (the papers' "1280x800") for detection, 512x2048 ("2048x512") for segmentation;
the image is padded as the config's data preprocessor pads it. The count is torch's FlopCounterMode
over one inference forward on the CPU (eval mode, no autograd, random weights: the figures depend on
shapes only). It sees every aten op, so the attention products q·kᵀ and attention·v are counted
whether they run as matmuls (Swin) or inside scaled_dot_product_attention (CoAtNet); mmcv's counter,
which the published figures come from, misses both. It counts matrix products and convolutions,
1 MAC per multiply-add; norms, activations, softmax, pooling, resizing and RoIAlign are not counted
(mmcv's counter adds most of them at one per element). mmcv's multi-scale deformable attention
(DINO, Mask2Former), whose CPU fallback the counter cannot see into, runs as one op
(``mmcoatnet/analysis/deformable_attention.py``) counted by a formula: per query, head, level and
point, bilinear sampling (4 MACs per channel of the head) and the attention-weighted sum (1 MAC per
channel); its linear projections are counted as matrix products.

The forward is the one the published figures come from (mmdet 2.x's ``forward_dummy``, mmseg's
``_forward``):
  detection     backbone, neck, RPN head, then the RoI head on --proposals fixed boxes (1000), every
                bbox stage on all of them and every mask stage on the first 100
  segmentation  backbone and decode head (with the data samples where it reads them: Mask2Former);
                the auxiliary head runs in training only
Other detectors (no RPN + RoI head) run their own ``_forward``.

Attention is every outermost module whose class name contains 'Attention' or 'MSA' (CoAtNet's
RelativeAttention, Swin's ShiftWindowMSA, mmcv's MultiheadAttention and
MultiScaleDeformableAttention): its projections and its products; the products alone are the
batched matmuls, attention kernels and deformable sampling inside it.

A count at the input a training image is counted at (800x1280 for detection, an upper bound of the
multi-scale training sizes, or the fixed size a batch is padded to, 1024x1024 for large-scale
jitter; the training crop for segmentation) also gets the GPU-hours of the
config's schedule, an estimate at an assumed throughput (``gpu_hours_estimate``:
``mmcoatnet/analysis/estimates.py``). ``--derive-only FILE`` adds or renews that estimate for every
entry of an existing results file, from its recorded MACs and the config's schedule, counting
nothing.
"""
import argparse
import contextlib
import inspect
import json
import os.path as osp
import re
import sys
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

try:
    from torch.utils.flop_counter import FlopCounterMode, flop_registry
except ImportError:  # torch < 2.2: a tool may stop at import with what it needs
    sys.exit(f'error: get_flops needs torch.utils.flop_counter.flop_registry (torch >= 2.2); '
             f'this is torch {torch.__version__}')

from mmcoatnet.analysis.deformable_attention import OP_NAME
from mmcoatnet.analysis.estimates import gpu_hours, training_images
from mmcoatnet.analysis.flops import (
    FLOPS_PER_MAC,
    attention_products_macs,
    deformable_attention_macs,
)
from mmcoatnet.analysis.synthetic import synthetic_batch
from mmcoatnet.utils.cli import ToolError, add_cfg_options_argument, exit_status, load_config
from mmcoatnet.utils.results import append_json, write_json
from mmcoatnet.utils.sizes import add_shape_argument

aten = torch.ops.aten
# mmcv's deformable attention as one op (mmcoatnet/analysis/deformable_attention.py), a product too,
# as the counter names its op
DEFORMABLE_ATTENTION_OP = OP_NAME.replace('::', '.')
DEFAULT_SHAPES = dict(mmdet=(800, 1280), mmseg=(512, 2048))
MASK_ROIS = 100  # mmdet 2.x's forward_dummy runs the mask head on the first 100 RoIs
ATTENTION_CLASS = re.compile(r'Attention|MSA')
CHECKED_OP = re.compile(r'attention|matmul|einsum|conv|(^|_)linear|(^|_)b?mm($|_)|addmm')


def sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FlopCounterMode's formula for the attention kernel: its unit is FLOPs, 2 per MAC."""
    return FLOPS_PER_MAC * attention_products_macs(query_shape, key_shape, value_shape)


# torch's FlopCounterMode has formulas for the CUDA attention kernels only; on the CPU
# scaled_dot_product_attention runs this kernel, which it would count as 0
EXTRA_FORMULAS = {aten._scaled_dot_product_flash_attention_for_cpu: sdpa_flops}
PRODUCT_OPS = {aten.bmm, aten.baddbmm, *EXTRA_FORMULAS,
               *[op for op in flop_registry if 'attention' in str(op)]}


def deformable_attention_flops(value_shape, spatial_shapes_shape, level_start_index_shape,
                               sampling_locations_shape, *args, out_shape=None, **kwargs) -> int:
    """FlopCounterMode's formula for mmcv's deformable attention op, in FLOPs (2 per MAC)."""
    return FLOPS_PER_MAC * deformable_attention_macs(value_shape, sampling_locations_shape)


def has_deformable_attention(model: nn.Module) -> bool:
    return any(type(module).__name__ == 'MultiScaleDeformableAttention'
               for module in model.modules())


def deformable_attention_counted(model: nn.Module, stack: contextlib.ExitStack) -> Dict:
    """Where the model has mmcv's MultiScaleDeformableAttention, enters the context in which it runs
    as one op (``deformable_attention.py``; registered only then, it needs torch >= 2.5) and
    returns that op's formula; else nothing."""
    if not has_deformable_attention(model):
        return {}
    from mmcoatnet.analysis.deformable_attention import (
        deformable_attention_as_one_op,
        deformable_attention_ops,
    )
    stack.enter_context(deformable_attention_as_one_op())
    op = deformable_attention_ops()['forward']
    return {op._opoverload._overloadpacket: deformable_attention_flops}


class UncountedOps(TorchDispatchMode):
    """Records product-like ops the counter has no formula for, so none is silently counted as 0."""

    def __init__(self, known):
        super().__init__()
        self.known = set(known)
        self.missed = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        packet = func._overloadpacket
        if packet not in self.known and CHECKED_OP.search(packet.__name__):
            self.missed.add(str(packet))
        return func(*args, **(kwargs or {}))


class Probe(nn.Module):
    """Calls ``run(model, ...)`` through one root module, so the counter names every submodule by
    its path in the model (Probe.model.backbone...), whichever part runs first."""

    def __init__(self, model: nn.Module, run: Callable):
        super().__init__()
        self.model = model
        self.run = run

    def forward(self, *args):
        return self.run(self.model, *args)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='MACs and parameters of a detector / segmentor')
    parser.add_argument('config', nargs='?',
                        help='a detection (mmdet) or segmentation (mmseg) config')
    add_shape_argument(parser, help='input height and width (default 800 1280 for detection, '
                       '512 2048 for segmentation)')
    parser.add_argument('--proposals', type=int, default=1000,
                        help='RoIs given to a two-stage detector\'s RoI head')
    parser.add_argument('--out', help='JSON file to add this result to (one entry per config, '
                             'shape and --cfg-options)')
    parser.add_argument('--derive-only', metavar='FILE',
                        help='add the GPU-hours estimate to every entry of this results file from '
                        'its recorded MACs, in place (no config, nothing counted)')
    add_cfg_options_argument(parser)
    args = parser.parse_args(argv)
    if bool(args.config) == bool(args.derive_only):
        parser.error('give a config, or --derive-only with a results file (not both)')
    return args


def library_config_path(config: str) -> str:
    """The file of a library's own config named as in ``_base_`` ('mmdet::swin/x.py'), which
    Config.fromfile does not resolve; any other path as given."""
    if '::' not in config:
        return config
    from mmengine.utils import get_installed_path
    package, relative = config.split('::', 1)
    return osp.join(get_installed_path(package), '.mim', 'configs', relative)


def build_model(cfg) -> nn.Module:
    from mmengine.registry import init_default_scope
    scope = cfg.get('default_scope')
    if scope not in DEFAULT_SHAPES:
        raise ToolError(f'get_flops counts mmdet and mmseg models; this config\'s '
                        f'default_scope is {scope!r}')
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS.build(cfg.model).eval()


def preprocessed_image(model: nn.Module, cfg, shape: Tuple[int, int]):
    """One random image of ``shape`` through the model's own data preprocessor (normalised and
    padded as in testing), with the metainfo the heads read."""
    data = model.data_preprocessor(synthetic_batch(cfg, shape), False)
    return data['inputs'], data['data_samples']


def fixed_proposals(count: int, shape: Tuple[int, int]) -> torch.Tensor:
    """``count`` boxes inside the image (seeded: the same boxes every run)."""
    generator = torch.Generator().manual_seed(0)
    height, width = shape
    corners = torch.rand(count, 2, 2, generator=generator) * torch.tensor([width, height])
    return torch.cat([corners.min(1).values, corners.max(1).values + 1], dim=1)


def two_stage_forward(num_proposals: int):
    """The papers' dummy forward of an RPN + RoI-head detector (mmdet 2.x ``forward_dummy``)."""
    from mmdet.structures.bbox import bbox2roi

    def run(model, inputs, data_samples):
        feats = model.extract_feat(inputs)
        model.rpn_head(feats)
        rois = bbox2roi([fixed_proposals(num_proposals, inputs.shape[-2:])])
        roi_head = model.roi_head
        stages = range(roi_head.num_stages) if hasattr(roi_head, 'num_stages') else [None]
        # Cascade heads take the stage first; the standard head has no stage argument
        stage_args = [() if stage is None else (stage,) for stage in stages]
        if roi_head.with_bbox:
            for args in stage_args:
                roi_head._bbox_forward(*args, feats, rois)
        if roi_head.with_mask:
            for args in stage_args:
                roi_head._mask_forward(*args, feats, rois[:MASK_ROIS])
    return run


def outermost_attention(model: nn.Module) -> List[Tuple[str, str]]:
    """(path, class name) of every attention module not inside another one."""
    found = []
    for name, module in model.named_modules():
        if ATTENTION_CLASS.search(type(module).__name__) and \
                not any(name.startswith(outer + '.') for outer, _ in found):
            found.append((name, type(module).__name__))
    return found


def count_flops(model: nn.Module, run: Callable, *inputs) -> Tuple[Dict[str, Dict], set]:
    """Per-module FLOP counts (by op; FLOPS_PER_MAC a multiply-add) of ``run(model, *inputs)``,
    keyed by module path in the model ('' for the whole model), and the product-like ops no formula
    covered. mmcv's deformable attention runs as one op, counted by its formula."""
    probe = Probe(model, run)
    with contextlib.ExitStack() as stack:
        formulas = {**EXTRA_FORMULAS, **deformable_attention_counted(model, stack)}
        counter = FlopCounterMode(display=False, custom_mapping=formulas)
        uncounted = UncountedOps(counter.flop_registry)
        with torch.no_grad(), counter, uncounted:
            probe(*inputs)
    # the probe is the root ('Probe'); the model's own submodules sit under 'Probe.model.'
    root, prefix = type(probe).__name__, f'{type(probe).__name__}.model.'
    counts = {}
    for name, by_op in counter.get_flop_counts().items():
        if name == root:
            counts[''] = by_op
        elif name.startswith(prefix):
            counts[name[len(prefix):]] = by_op
    return counts, uncounted.missed


def total(by_op: Optional[Dict]) -> int:
    return sum((by_op or {}).values())


def subtree_total(counts: Dict[str, Dict], model: nn.Module, name: str) -> int:
    """FLOPs of the module at ``name``: its own count when it was called, else the sum of its
    children's (the RoI head's parts run through its methods, not its forward)."""
    if name in counts:
        return total(counts[name])
    return sum(subtree_total(counts, model, f'{name}.{child}')
               for child, _ in model.get_submodule(name).named_children())


def params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def measure(config: str, shape: Optional[Tuple[int, int]] = None, proposals: int = 1000,
            cfg_options: Optional[dict] = None) -> dict:
    cfg = load_config(library_config_path(config), cfg_options)
    model = build_model(cfg)
    scope = cfg.default_scope
    shape = tuple(shape or DEFAULT_SHAPES[scope])
    inputs, data_samples = preprocessed_image(model, cfg, shape)
    two_stage = getattr(model, 'with_rpn', False) and getattr(model, 'with_roi_head', False)
    if scope == 'mmdet' and two_stage:
        run = two_stage_forward(proposals)
        forward = (f'backbone, neck, RPN head; RoI head on {proposals} proposals (every bbox '
                   f'stage on all, every mask stage on the first {MASK_ROIS})')
    elif scope == 'mmdet':
        run, forward = (lambda m, x, s: m._forward(x, s)), "the detector's _forward"
    elif 'batch_data_samples' in inspect.signature(model.decode_head.forward).parameters:
        # mmseg's _forward gives the head no data samples, which Mask2Former's head reads
        run = lambda m, x, s: m.decode_head.forward(m.extract_feat(x), s)  # noqa: E731
        forward = 'backbone, neck if any, decode head'
    else:
        run, forward = (lambda m, x, s: m._forward(x)), 'backbone, neck if any, decode head'
    counts, missed = count_flops(model, run, inputs, data_samples)
    if missed:
        raise RuntimeError(f'ops without a FLOP formula ran: {sorted(missed)}; add one to '
                           'EXTRA_FORMULAS so the count is complete')
    # the counts are FLOPs; the report is in MACs, as the papers count
    macs = total(counts.get('')) // FLOPS_PER_MAC
    attention = outermost_attention(model)
    attention_macs = sum(total(counts.get(name)) for name, _ in attention) // FLOPS_PER_MAC
    product_macs = sum(flops for name, _ in attention for op, flops in
                       (counts.get(name) or {}).items()
                       if op in PRODUCT_OPS or str(op) == DEFORMABLE_ATTENTION_OP) // FLOPS_PER_MAC
    parts = {name: subtree_total(counts, model, name) // FLOPS_PER_MAC
             for name, _ in model.named_children()}
    parts = {name: value for name, value in parts.items() if value}
    backbone_macs = parts.get('backbone', 0)
    return dict(
        config=config if '::' in config else osp.relpath(config),
        cfg_options=cfg_options or {},
        task='detection' if scope == 'mmdet' else 'segmentation',
        shape=list(shape), input_shape=list(inputs.shape[-2:]), forward=forward,
        gmacs=macs / 1e9, params_m=params(model) / 1e6, macs=macs, params=params(model),
        backbone=dict(type=type(model.backbone).__name__, gmacs=backbone_macs / 1e9,
                      params_m=params(model.backbone) / 1e6, share=backbone_macs / macs,
                      macs=backbone_macs, params=params(model.backbone)),
        attention=dict(modules=sorted({kind for _, kind in attention}), count=len(attention),
                       gmacs=attention_macs / 1e9, share=attention_macs / macs,
                       products_gmacs=product_macs / 1e9, products_share=product_macs / macs,
                       macs=attention_macs, products_macs=product_macs),
        parts_gmacs={name: value / 1e9 for name, value in parts.items()})


def training_shape(cfg) -> Tuple[int, int]:
    """The input a training image is counted at for the GPU-hours: the crop for segmentation; for
    detection the fixed size every training batch is padded to (large-scale jitter's
    BatchFixedSizePad, 1024x1024 for Mask2Former), else the papers' 800x1280, an upper bound of the
    multi-scale training sizes."""
    if cfg.default_scope == 'mmseg' and cfg.get('crop_size'):
        return tuple(cfg.crop_size)
    for augment in cfg.model.get('data_preprocessor', {}).get('batch_augments') or []:
        if augment.get('type') == 'BatchFixedSizePad':
            return tuple(augment['size'])
    return DEFAULT_SHAPES[cfg.default_scope]


def derive(entry: dict) -> dict:
    """The entry with the GPU-hours of its config's training
    (:func:`mmcoatnet.analysis.estimates.gpu_hours`, ``gpu_hours_estimate``) when it was counted at
    the training input and the schedule's images are known; otherwise as it is."""
    cfg = load_config(library_config_path(entry['config']), entry.get('cfg_options') or None)
    images = training_images(cfg)
    if images is None or tuple(entry['shape']) != tuple(training_shape(cfg)):
        return entry
    return {**entry, 'gpu_hours_estimate': gpu_hours(entry['macs'], *images)}


def describe(report: dict) -> str:
    backbone, attention = report['backbone'], report['attention']
    lines = [
        f"{report['config']}  ({report['task']}, input {report['input_shape'][0]}x"
        f"{report['input_shape'][1]} from --shape {report['shape'][0]} {report['shape'][1]})",
        f"  forward: {report['forward']}",
        f"  whole model   {report['gmacs']:8.1f} GMACs  {report['params_m']:7.2f} M params",
        f"  backbone      {backbone['gmacs']:8.1f} GMACs  {backbone['params_m']:7.2f} M params  "
        f"({100 * backbone['share']:.1f}% of the MACs, {backbone['type']})",
        f"  attention     {attention['gmacs']:8.1f} GMACs  ({100 * attention['share']:.1f}%; "
        f"{attention['count']} x {', '.join(attention['modules']) or 'none'})",
        f"    q·kᵀ, attn·v {attention['products_gmacs']:7.1f} GMACs  "
        f"({100 * attention['products_share']:.1f}%)",
        '  by part: ' + ', '.join(f'{name} {value:.1f}' for name, value in
                                  report['parts_gmacs'].items()),
    ]
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.derive_only:
        with open(args.derive_only) as f:
            entries = [derive(entry) for entry in json.load(f)]
        write_json(args.derive_only, entries)
        print(f'derived: {len(entries)} entries of {args.derive_only}, '
              f"{sum('gpu_hours_estimate' in e for e in entries)} with a GPU-hours estimate")
        return
    report = derive(measure(args.config, args.shape, args.proposals, args.cfg_options))
    print(describe(report))
    if 'gpu_hours_estimate' in report:
        estimate = report['gpu_hours_estimate']
        print(f"  GPU-hours   {estimate['gpu_hours']:8.0f} ({estimate['schedule']}; "
              f"{estimate['note']})")
    if args.out:
        append_json(args.out, report, key=lambda entry: (
            entry['config'], entry['shape'], entry.get('cfg_options', {})))
        print(f'written to {args.out}')


if __name__ == '__main__':
    sys.exit(exit_status(main))
