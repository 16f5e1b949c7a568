"""Exports a config's model to ONE ONNX file that runs at any batch, height and width, and checks it
against PyTorch in onnxruntime.

    python tools/deployment/pytorch2onnx.py CONFIG [CHECKPOINT] --out FILE
        [--what backbone|segmentor] [--exporter torchscript|dynamo] [--shape H W]
        [--trace-batch N] [--opset N] [--fp16] [--verify-sizes 224x224 333x517 ...]
        [--repeat N] [--memory] [--record docs/results/onnx_*.json] [--cfg-options K=V ...]

--what backbone (detection configs): mmdet's extract_feat, backbone + neck, image to FPN maps;
--what segmentor (segmentation configs): the whole segmentor, image to logits at the image's size.
Default: backbone for an mmdet config, segmentor for an mmseg one. The input is the normalised
image (what the data preprocessor gives), at least 32x32. Without CHECKPOINT the weights are random.
--exporter: torchscript (the default; deprecated by torch, the one mmdeploy 1.3.1 needs) or dynamo
(torch.export, torch's own default; needs onnxscript; many times slower to export). --fp16 writes
float16 weights and computation with float32 input and outputs (onnxruntime's converter).
--verify-sizes runs the file in onnxruntime at each size and prints the max abs difference from
PyTorch (float32) per output; with --repeat N > 0 also both inference times (best of N); with
--memory each one's peak memory growth in one inference, each measured in a fresh process; --record
appends the figures and the export time to a JSON list.
"""
import argparse
import multiprocessing
import os
import os.path as osp
import platform
import sys
import time

import onnxruntime
import torch

from mmcoatnet.analysis.memory import current_rss_bytes, peak_rss_bytes
from mmcoatnet.deployment.onnx_export import (
    EXPORTERS,
    WHATS,
    build_export_model,
    check_export_options,
    compare_with_torch,
    convert_to_float16,
    default_opset,
    export_onnx,
    onnx_session,
    run_onnx,
)
from mmcoatnet.utils.cli import ToolError, add_cfg_options_argument, exit_status, load_config
from mmcoatnet.utils.results import append_json
from mmcoatnet.utils.sizes import add_shape_argument, add_sizes_argument


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?', help='weights (default: random)')
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--what', help=f'one of {sorted(WHATS)} (default: by the config\'s scope)')
    parser.add_argument('--exporter', choices=EXPORTERS, default='torchscript',
                        help='torch.onnx\'s TorchScript exporter (default: exports CoAtNet-1 + FPN '
                        'in seconds, where dynamo takes many minutes) or its dynamo one')
    add_shape_argument(parser, default=(224, 224),
                       help='image size to trace at (the graph takes any size)')
    parser.add_argument('--trace-batch', type=int, default=1,
                        help='batch of the tracing image (the graph takes any batch)')
    parser.add_argument('--opset', type=int,
                        help='ONNX opset (default: 18 with dynamo, 17 with torchscript)')
    parser.add_argument('--fp16', action='store_true',
                        help='float16 weights and computation, float32 input and outputs')
    add_sizes_argument(parser, '--verify-sizes', default=[],
                       help='sizes to compare the file with PyTorch at')
    parser.add_argument('--batch', type=int, default=1, help='batch of the verification images')
    parser.add_argument('--repeat', type=int, default=0, help='timed runs per size (0: untimed)')
    parser.add_argument('--memory', action='store_true',
                        help='peak memory growth of one inference in each, in fresh processes')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads(),
                        help='threads of PyTorch and onnxruntime when verifying')
    parser.add_argument('--record', help='JSON list to append the verification figures to')
    add_cfg_options_argument(parser)
    return parser.parse_args(argv)


def peak_inference_memory(runtime: str, args, size) -> dict:
    """One inference of a (batch, 3, *size) image in ``runtime`` ('torch' or 'onnxruntime'), run in
    the calling (fresh) process: the peak resident memory above what the loaded model holds, and
    the time of that first run."""
    torch.set_num_threads(args.threads)
    image = torch.randn(args.batch, 3, *size, generator=torch.Generator().manual_seed(0))
    if runtime == 'torch':
        model = build_export_model(load_config(args.config, args.cfg_options), args.what,
                                   args.checkpoint)
        run = torch.no_grad()(lambda: model(image))
    else:
        session = onnx_session(args.out, threads=args.threads)
        run = lambda: run_onnx(session, image.numpy())  # noqa: E731
    loaded = current_rss_bytes()
    start = time.perf_counter()
    run()
    return dict(peak_growth_bytes=peak_rss_bytes() - loaded,
                first_run_seconds=time.perf_counter() - start)


def measure_memory(args, size) -> dict:
    """:func:`peak_inference_memory` of PyTorch and of onnxruntime, each in a fresh process (peak
    memory only grows within a process)."""
    context = multiprocessing.get_context('spawn')
    with context.Pool(1, maxtasksperchild=1) as pool:
        return {runtime: pool.apply(peak_inference_memory, (runtime, args, size))
                for runtime in ('torch', 'onnxruntime')}


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    scope = cfg.get('default_scope')
    args.what = args.what or next((w for w, s in WHATS.items() if s == scope), 'backbone')
    opset = default_opset(args.exporter) if args.opset is None else args.opset
    try:
        check_export_options(args.what, opset, scope, args.exporter)
    except ValueError as error:
        raise ToolError(str(error))
    model = build_export_model(cfg, args.what, args.checkpoint)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    start = time.perf_counter()
    names = export_onnx(model, args.out, args.shape, opset, args.exporter, args.trace_batch)
    export_seconds = time.perf_counter() - start
    if args.fp16:
        convert_to_float16(args.out)
    print(f'wrote {args.out} ({osp.getsize(args.out) / 2 ** 20:.1f} MB, opset {opset}, '
          f'{"float16" if args.fp16 else "float32"}, outputs {names}) with the {args.exporter} '
          f'exporter in {export_seconds:.1f} s; dynamic axes: batch, height, width')
    if not args.verify_sizes:
        return
    torch.set_num_threads(args.threads)
    session = onnx_session(args.out, threads=args.threads)
    results = []
    for size in args.verify_sizes:
        result = compare_with_torch(model, session, size, batch=args.batch, repeat=args.repeat)
        line = (f'{size[0]}x{size[1]}: max abs diff {max(result["max_abs_diff"]):.3g} '
                f'(per output {", ".join(f"{d:.2g}" for d in result["max_abs_diff"])}; '
                f'largest |value| {max(result["max_abs_value"]):.3g})')
        if args.repeat:
            line += (f'; PyTorch {result["torch_seconds"]:.3f} s, onnxruntime '
                     f'{result["onnxruntime_seconds"]:.3f} s')
        if args.memory:
            result['memory'] = measure_memory(args, size)
            line += '; peak growth ' + ', '.join(
                f'{runtime} {figures["peak_growth_bytes"] / 2 ** 30:.2f} GiB'
                for runtime, figures in result['memory'].items())
        results.append(result)
        print(line, flush=True)
    if args.record:
        append_json(args.record, dict(
            config=osp.relpath(osp.abspath(args.config)), checkpoint=args.checkpoint,
            what=args.what, cfg_options=args.cfg_options or {}, opset=opset,
            exporter=f'torch.onnx dynamo={args.exporter == "dynamo"}',
            export_seconds=round(export_seconds, 1), float16=args.fp16,
            traced_at=[args.trace_batch, 3, *args.shape], threads=args.threads, repeat=args.repeat,
            onnxruntime=onnxruntime.__version__, cpu=platform.processor() or None,
            load_average=os.getloadavg(), results=results))
        print(f'recorded in {args.record}')


if __name__ == '__main__':
    sys.exit(exit_status(main))
