"""torch.compile against eager for a whole detector or segmentor, over batches of varying sizes.

    python tools/analysis_tools/compile_benchmark.py CONFIG [--sizes 128x160 160x128 ...]
        [--batch 2] [--backend inductor] [--dynamic auto|true|false] [--modes train inference]
        [--out docs/results/compile_cpu_NAME.json] [--cfg-options K=V ...]

It builds the config's model and optimizer wrapper and makes one synthetic batch per size
(``mmcoatnet.analysis.synthetic``: random instances or label maps, through the config's data
preprocessor), then
per mode (``train``: ``model.train_step``, compiled as mmengine's ``compile=True`` compiles it;
``inference``: ``model.test_step`` without autograd):

- eager: one pass over the sizes to warm up, one timed;
- compiled (``torch.compile(step, backend=..., dynamic=...)``): a first pass over the sizes, which
  compiles (its time, less the eager pass's, is the compile time), then a timed pass, with dynamo's
  graphs, recompilations (and the guard that failed each time) and graph breaks counted per pass.

Step times are medians over the sizes of the timed pass. Results print and are written as JSON.
"""
import argparse
import os.path as osp
import statistics
import sys
import time

import torch

from mmcoatnet.analysis.compile_counts import counting_compiles
from mmcoatnet.analysis.synthetic import synthetic_batch
from mmcoatnet.engine.hooks import prepare_compiled_training
from mmcoatnet.utils.cli import add_cfg_options_argument, exit_status, load_config
from mmcoatnet.utils.results import default_result_path, write_json
from mmcoatnet.utils.sizes import add_sizes_argument

DYNAMIC = dict(auto=None, true=True, false=False)  # torch.compile's dynamic=


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='torch.compile against eager, varying sizes')
    parser.add_argument('config', help='a detection (mmdet) or segmentation (mmseg) config')
    add_sizes_argument(parser, default=[(128, 160), (160, 128), (96, 128), (160, 96)],
                       help='image sizes, one batch each (before the preprocessor pads them)')
    parser.add_argument('--batch', type=int, default=2, help='images per batch')
    parser.add_argument('--instances', type=int, default=4, help='objects per image (mmdet)')
    parser.add_argument('--backend', default='inductor', help="torch.compile's backend")
    parser.add_argument('--dynamic', choices=sorted(DYNAMIC), default='auto',
                        help="torch.compile's dynamic= (auto: None, dynamic after a recompile)")
    parser.add_argument('--modes', nargs='+', choices=['train', 'inference'],
                        default=['train', 'inference'])
    parser.add_argument('--out',
                        help='JSON path (default work_dirs/compile_benchmark/<config>.json)')
    add_cfg_options_argument(parser)
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error('--batch must be at least 1')
    return args


def timed_pass(step, batches) -> list:
    times = []
    for batch in batches:
        start = time.perf_counter()
        step(batch)
        times.append(time.perf_counter() - start)
    return times


def compare(step, batches, compile_kwargs: dict) -> dict:
    """Eager, then compiled, over ``batches``: times and dynamo's counts (see the module doc)."""
    timed_pass(step, batches)  # warm-up: allocator, oneDNN primitives, lazy initialisation
    eager = timed_pass(step, batches)
    compiled_step = torch.compile(step, **compile_kwargs)
    with counting_compiles() as first_counts:
        first = timed_pass(compiled_step, batches)
    with counting_compiles() as second_counts:
        second = timed_pass(compiled_step, batches)
    eager_s, compiled_s = statistics.median(eager), statistics.median(second)
    return dict(eager_s=eager_s, compiled_s=compiled_s, compiled_over_eager=compiled_s / eager_s,
                compile_s=sum(first) - sum(eager), eager_times=eager, first_pass_times=first,
                compiled_times=second, first_pass=first_counts.summary(),
                second_pass=second_counts.summary(), recompile_reasons=first_counts.recompiles,
                graph_breaks=first_counts.graph_breaks)


def measure(args) -> dict:
    from mmengine.logging import MMLogger
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, init_default_scope

    MMLogger.get_instance('compile_benchmark', log_level='WARNING')
    cfg = load_config(args.config, args.cfg_options)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model)).train()  # one process: plain BN
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    prepare_compiled_training(optim_wrapper)  # as tools/train.py does with compile set
    batches = [synthetic_batch(cfg, size, args.batch, args.instances) for size in args.sizes]
    compile_kwargs = dict(backend=args.backend, dynamic=DYNAMIC[args.dynamic])
    result = dict(config=osp.relpath(args.config), sizes=[list(s) for s in args.sizes],
                  batch=args.batch, backend=args.backend, dynamic=args.dynamic,
                  cfg_options=args.cfg_options or {}, threads=torch.get_num_threads(), modes={})
    for mode in args.modes:
        if mode == 'train':
            model.train()
            result['modes'][mode] = compare(lambda batch: model.train_step(batch, optim_wrapper),
                                            batches, compile_kwargs)
        else:
            model.eval()
            with torch.no_grad():
                result['modes'][mode] = compare(model.test_step, batches, compile_kwargs)
        torch._dynamo.reset()  # the next mode compiles from nothing, so its counts are its own
    return result


def report(result: dict) -> str:
    lines = [f"{result['config']}: batch {result['batch']}, sizes "
             f"{', '.join('x'.join(map(str, s)) for s in result['sizes'])}, backend "
             f"{result['backend']}, dynamic={result['dynamic']}, {result['threads']} threads"]
    for mode, figures in result['modes'].items():
        first, second = figures['first_pass'], figures['second_pass']
        lines.append(
            f"{mode:>9}: eager {figures['eager_s']:.3f} s/step, compiled "
            f"{figures['compiled_s']:.3f} s/step ({figures['compiled_over_eager']:.2f}x eager), "
            f"compile {figures['compile_s']:.0f}"
            f" s; first pass {first['graphs']} graphs, {first['recompiles']} recompiles, "
            f"{first['graph_breaks']} graph breaks; second pass {second['graphs']} graphs, "
            f"{second['recompiles']} recompiles")
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    result = measure(args)
    print(report(result))
    out = args.out or default_result_path('compile_benchmark', args.config)
    print(f'written to {write_json(out, result)}')


if __name__ == '__main__':
    sys.exit(exit_status(main))
