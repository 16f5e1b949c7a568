"""Peak memory and time of training iterations of a whole detector or segmentor, from its config.

    python tools/analysis_tools/train_memory.py CONFIG [--shape H W] [--batch 2] [--amp]
        [--iters 4] [--device cuda|cpu] [--out work_dirs/train_memory/NAME.json]
        [--cfg-options K=V ...]
    python tools/analysis_tools/train_memory.py CONFIG --simulate cuda [--amp] [--shape H W]
        [--batch 2] [--out ...]

The question it answers: does this config train at this input size and batch on this machine? It
builds the config's model and optimizer wrapper (with ``--amp``, mmengine's AmpOptimWrapper in
float16, as ``tools/train.py --amp`` trains) and runs ``model.train_step`` on a synthetic batch of
``--batch`` images of ``--shape`` (H W; mmdet's 1333x800 scale is ``--shape 800 1333``) with random
instances (boxes and masks) or a random label map, through the config's own data preprocessor.
No dataset and no pretrained weights are read: the figures depend on shapes, not values.

Peak memory covers every iteration, optimizer states included: on a GPU
``torch.cuda.max_memory_allocated`` (tensors) and ``max_memory_reserved`` (what the caching
allocator holds, the figure that must fit on the card); on the CPU, peak RSS less the RSS after
imports (the model library's included), with glibc told to serve every allocation of 1 MiB or
more by mmap, so that freed maps leave the process at once and the peak is the live one (with
glibc's defaults, the heap it keeps
adds about 6 GiB to Mask R-CNN CoAtNet-1's 11 GiB at 800x1333; the price is slower CPU
iterations). Time is the median iteration after the first. Results print and are written as JSON.

``--simulate cuda`` estimates a GPU's figures without a GPU and without running the arithmetic:
two training steps on fake tensors (shapes, no data; ``mmcoatnet/analysis/simulation.py``)
counted by torch's MemTracker, as a GPU runs them (attention kernels chosen for CUDA, the
memory-efficient SDPA kernel, FlexAttention as a stand-in holding what it holds, CUDA's autocast
policy with ``--amp``; the kernels are recorded in the result), once as configured and once
with ``model.backbone.with_cp=True`` (``--skip-with-cp``: once). It reports the peak split into
parameters, gradients, optimizer state and activations, adds the margin for what a real CUDA run
holds beyond its tensors, and names the cards that hold it, the smallest first
(``mmcoatnet/analysis/estimates.py``: ``card_fit``, its margin and card sizes).
``--simulate cpu`` counts the CPU's own float32 step the same way, to check the counting against a
real CPU run.

    python tools/analysis_tools/train_memory.py --derive-only RESULT.json [RESULT.json ...]

re-derives the card figures of existing ``--simulate cuda`` results from their recorded peaks and
margin, in place, with the same function; nothing is simulated.
"""
import argparse
import importlib
import json
import os.path as osp
import statistics
import sys
import time

import numpy as np
import torch

from mmcoatnet.analysis.estimates import (
    CUDA_MARGIN_FIXED_BYTES,
    CUDA_MARGIN_FRACTION,
    card_fit,
)
from mmcoatnet.analysis.memory import (
    current_rss_bytes,
    gib,
    peak_rss_bytes,
    return_freed_memory_at_once,
)
from mmcoatnet.analysis.synthetic import synthetic_batch
from mmcoatnet.utils.cli import (
    ToolError,
    add_cfg_options_argument,
    default_device,
    exit_status,
    load_config,
    refuse_amp_without_gpu,
    use_amp_optim_wrapper,
)
from mmcoatnet.utils.results import default_result_path, write_json
from mmcoatnet.utils.sizes import add_shape_argument

SIMULATION_TARGETS = ('cuda', 'cpu')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Peak memory and time of training iterations')
    parser.add_argument('config', nargs='?',
                        help='a detection (mmdet) or segmentation (mmseg) config')
    add_shape_argument(parser, default=(800, 1333),
                       help='image height and width before the preprocessor pads them')
    parser.add_argument('--batch', type=int, default=2, help='images per iteration')
    parser.add_argument('--iters', type=int, default=4, help='training iterations (at least 2)')
    parser.add_argument('--amp', action='store_true', help='float16 mixed precision (GPU only)')
    parser.add_argument('--device', default=default_device())
    parser.add_argument('--instances', type=int, default=20,
                        help='objects per image (mmdet), classes per label map (mmseg)')
    parser.add_argument('--out', help="JSON path (default work_dirs/train_memory/<config>.json)")
    parser.add_argument('--simulate', choices=SIMULATION_TARGETS,
                        help="estimate the memory of a training step on this device type by "
                        "simulation, without a GPU: 'cuda' as a GPU runs it, 'cpu' to check "
                        "the counting against a real CPU run")
    parser.add_argument('--skip-with-cp', action='store_true',
                        help='simulate the config as given only, not also with with_cp')
    parser.add_argument('--derive-only', nargs='+', metavar='RESULT',
                        help='re-derive the card figures of existing --simulate cuda results '
                        'files from their recorded peaks, in place (no config, nothing simulated)')
    add_cfg_options_argument(parser)
    args = parser.parse_args(argv)
    if bool(args.config) == bool(args.derive_only):
        parser.error('give a config, or --derive-only with results files (not both)')
    if args.iters < 2:
        parser.error('--iters must be at least 2: the first iteration is not timed')
    if args.batch < 1:
        parser.error('--batch must be at least 1')
    if args.amp and args.simulate == 'cpu':
        parser.error('--simulate cpu checks the float32 CPU step; for AMP use --simulate cuda')
    if args.amp and not args.simulate:
        try:
            refuse_amp_without_gpu(args.device, instead='measure (or add --simulate cuda)')
        except ToolError as error:
            parser.error(str(error))
    return args


def measure(args) -> dict:
    from mmengine.logging import MMLogger
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, init_default_scope

    device = torch.device(args.device)
    cuda = device.type == 'cuda'
    freed_memory_returned = not cuda and return_freed_memory_at_once()
    MMLogger.get_instance('train_memory', log_level='WARNING')  # not the per-parameter lr lines
    cfg = load_config(args.config, args.cfg_options)
    if args.amp:
        use_amp_optim_wrapper(cfg)  # as tools/train.py --amp does
    init_default_scope(cfg.default_scope)
    importlib.import_module(f'{cfg.default_scope}.models')  # code, not training memory
    rss_after_imports = current_rss_bytes()
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)  # weights are not initialised from files: values do not matter
    model = revert_sync_batchnorm(model).to(device).train()  # one process: SyncBN has no group
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    data = synthetic_batch(cfg, args.shape, args.batch, args.instances)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for _ in range(args.iters):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        log_vars = model.train_step(data, optim_wrapper)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        losses.append(log_vars['loss'].item())
    result = dict(config=osp.relpath(args.config), shape=list(args.shape), batch=args.batch,
                  amp=args.amp, cfg_options=args.cfg_options or {}, device=device.type,
                  iters=args.iters, times=times,
                  seconds=statistics.median(times[1:]), losses=losses,
                  params=sum(p.numel() for p in model.parameters()), torch=torch.__version__)
    if cuda:
        result.update(peak_allocated_bytes=torch.cuda.max_memory_allocated(),
                      peak_reserved_bytes=torch.cuda.max_memory_reserved(),
                      gpu=torch.cuda.get_device_name(device),
                      gpu_total_bytes=torch.cuda.get_device_properties(device).total_memory)
    else:
        result.update(peak_rss_bytes=peak_rss_bytes() - rss_after_imports,
                      threads=torch.get_num_threads(), freed_memory_returned=freed_memory_returned)
    return result


def simulate_one(args) -> dict:
    """The simulated peak of the config as given
    (:func:`mmcoatnet.analysis.simulation.simulate_training_memory`),
    in bytes by kind. The batch goes through the config's data preprocessor for real first."""
    from mmengine.logging import MMLogger
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, init_default_scope

    from mmcoatnet.analysis.attention_simulation import attention_kernels_recorded
    from mmcoatnet.analysis.simulation import simulate_training_memory

    MMLogger.get_instance('train_memory', log_level='WARNING')
    cfg = load_config(args.config, args.cfg_options)
    amp = args.amp or cfg.optim_wrapper.get('type') == 'AmpOptimWrapper'
    if cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':  # it needs a GPU; autocast stands for it
        cfg.optim_wrapper.type = 'OptimWrapper'
        for key in ('dtype', 'loss_scale'):
            cfg.optim_wrapper.pop(key, None)
    init_default_scope(cfg.default_scope)
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    batch = preprocessor(synthetic_batch(cfg, args.shape, args.batch, args.instances), True)
    params = []

    def build_model():
        model = revert_sync_batchnorm(MODELS.build(cfg.model)).train()
        params.append(sum(p.numel() for p in model.parameters()))
        return model

    start = time.perf_counter()
    with attention_kernels_recorded() as kernels:
        peak = simulate_training_memory(build_model,
                                        lambda model: build_optim_wrapper(model, cfg.optim_wrapper),
                                        batch, target=args.simulate,
                                        amp_dtype=torch.float16 if amp else None)
    return dict(peak=peak, amp=amp, params=params[0], seconds=time.perf_counter() - start,
                attention_kernels=dict(sorted(kernels.items())))


def simulate(args) -> dict:
    """The simulated peak as configured and with ``with_cp``."""
    runs = {}
    variants = {'default': {}, 'with_cp': {'model.backbone.with_cp': True}}
    if args.skip_with_cp:
        variants.pop('with_cp')
    for name, options in variants.items():
        runs[name] = simulate_one(argparse.Namespace(
            **{**vars(args), 'cfg_options': {**(args.cfg_options or {}), **options}}))
    result = dict(config=osp.relpath(args.config), shape=list(args.shape), batch=args.batch,
                  amp=runs['default']['amp'], cfg_options=args.cfg_options or {},
                  simulate=args.simulate, params=runs['default']['params'],
                  torch=torch.__version__, instances=args.instances,
                  peak_bytes={name: run['peak'] for name, run in runs.items()},
                  seconds={name: run['seconds'] for name, run in runs.items()},
                  # the attention kernels simulated, by calls (recomputations included)
                  attention_kernels={name: run['attention_kernels'] for name, run in runs.items()})
    return derive(result) if args.simulate == 'cuda' else result


def derive(result: dict) -> dict:
    """A ``--simulate cuda`` result with what it derives from its peaks, per variant
    (:func:`mmcoatnet.analysis.estimates.card_fit`): the margin, ``needed_bytes`` (peak and
    margin), ``smallest_card_gb`` and ``cards_gb`` (every card size that holds it). A result that
    records its margin keeps it."""
    margin = result.get('margin') or dict(fraction=CUDA_MARGIN_FRACTION,
                                          fixed_bytes=CUDA_MARGIN_FIXED_BYTES)
    fits = {name: card_fit(peak['total'], margin['fraction'], margin['fixed_bytes'])
            for name, peak in result['peak_bytes'].items()}
    return {**result, 'margin': margin,
            **{key: {name: fit[key] for name, fit in fits.items()}
               for key in ('needed_bytes', 'smallest_card_gb', 'cards_gb')}}


def derive_files(paths) -> int:
    """``--derive-only``: :func:`derive` over existing results files, written back in place."""
    for path in paths:
        with open(path) as f:
            result = json.load(f)
        if result.get('simulate') != 'cuda':
            raise ToolError(f'{path}: not a --simulate cuda result; only those name a card')
        write_json(path, derive(result))
        print(f'derived: {path}')
    return 0


def simulation_summary(result: dict) -> str:
    shape = 'x'.join(map(str, result['shape']))
    precision = 'AMP float16' if result['amp'] else 'float32'
    lines = [f'{result["config"]}: batch {result["batch"]} of {shape}, {precision}, simulated '
             f'for {result["simulate"]} (no arithmetic run)',
             f'  {"backbone":<10} {"peak GiB":>9} {"params":>7} {"grads":>7} {"optim":>7} '
             f'{"activ.":>7}' + (f' {"+margin":>8}  card' if 'needed_bytes' in result else '')]
    for name, peak in result['peak_bytes'].items():
        line = (f'  {name:<10} {gib(peak["total"]):>9} {gib(peak["parameters"]):>7} '
                f'{gib(peak["gradients"]):>7} {gib(peak["optimizer_state"]):>7} '
                f'{gib(peak["activations"]):>7}')
        if 'needed_bytes' in result:
            card = result['smallest_card_gb'][name]
            line += f' {gib(result["needed_bytes"][name]):>8}  ' + (f'{card} GB' if card
                                                                   else 'over 80 GB')
        lines.append(line)
    for name, kernels in result.get('attention_kernels', {}).items():
        lines.append(f'  {name} attention: ' + ', '.join(f'{kernel} x{calls}'
                                                         for kernel, calls in kernels.items()))
    if 'margin' in result:
        lines.append(f'  margin: +{result["margin"]["fraction"]:.0%} of the peak + '
                     f'{gib(result["margin"]["fixed_bytes"])} GiB (allocator, CUDA context, '
                     'workspaces); cards in decimal GB')
    return '\n'.join(lines)


def summary(result: dict) -> str:
    shape = 'x'.join(map(str, result['shape']))
    precision = 'AMP float16' if result['amp'] else 'float32'
    where = result.get('gpu', f'CPU, {result.get("threads")} threads')
    lines = [f'{result["config"]}: batch {result["batch"]} of {shape}, {precision}, {where}',
             f'  iteration: {result["seconds"]:.3f} s (median of {result["iters"] - 1} after '
             'the first)']
    if 'peak_allocated_bytes' in result:
        lines.append(f'  peak memory: {gib(result["peak_allocated_bytes"])} GiB allocated, '
                     f'{gib(result["peak_reserved_bytes"])} GiB reserved, of '
                     f'{gib(result["gpu_total_bytes"])} GiB')
    else:
        how = ('freed memory returned at once' if result['freed_memory_returned']
               else "glibc's retained heap included")
        lines.append(f'  peak memory: {gib(result["peak_rss_bytes"])} GiB (RSS growth; {how})')
    lines.append('  losses: ' + ', '.join(f'{loss:.4f}' for loss in result['losses']))
    return '\n'.join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.derive_only:
        return derive_files(args.derive_only)
    if args.simulate:
        return write_simulation(args, simulate(args))
    result = measure(args)
    bad = [loss for loss in result['losses'] if not np.isfinite(loss)]
    print(summary(result))
    out = args.out or default_result_path('train_memory', args.config)
    print(f'written to {write_json(out, result)}')
    if bad:
        print(f'error: non-finite losses {bad}', file=sys.stderr)
        return 1
    return 0


def write_simulation(args, result: dict) -> int:
    print(simulation_summary(result))
    suffix = f'_simulated_{args.simulate}' + ('_amp' if args.amp else '') + '.json'
    out = args.out or default_result_path('train_memory', args.config)[:-len('.json')] + suffix
    print(f'written to {write_json(out, result)}')
    return 0


if __name__ == '__main__':
    sys.exit(exit_status(main))
