"""Exports a config's model to ONE ONNX file that runs at any batch, height and width, and checks it
against PyTorch in onnxruntime.

    python tools/deployment/pytorch2onnx.py CONFIG [CHECKPOINT] --out FILE
        [--what backbone|segmentor] [--shape H W] [--opset N]
        [--verify-sizes 224x224 333x517 ...] [--repeat N] [--record docs/results/onnx_*.json]
        [--cfg-options K=V ...]

--what backbone (detection configs): mmdet's extract_feat, backbone + neck, image to FPN maps;
--what segmentor (segmentation configs): the whole segmentor, image to logits at the image's size.
Default: backbone for an mmdet config, segmentor for an mmseg one. The input is the normalised
image (what the data preprocessor gives), at least 32x32. Without CHECKPOINT the weights are random.
--verify-sizes runs the file in onnxruntime at each size and prints the max abs difference from
PyTorch per output; with --repeat N > 0 also both inference times (best of N); --record appends
the figures to a JSON list.
"""
import argparse
import os
import os.path as osp
import platform
import sys

import onnxruntime
import torch

from mmcoatnet.deployment.onnx_export import (
    DEFAULT_OPSET,
    WHATS,
    build_export_model,
    check_export_options,
    compare_with_torch,
    export_onnx,
    onnx_session,
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
    add_shape_argument(parser, default=(224, 224),
                       help='image size to trace at (the graph takes any size)')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET)
    add_sizes_argument(parser, '--verify-sizes', default=[],
                       help='sizes to compare the file with PyTorch at')
    parser.add_argument('--batch', type=int, default=1, help='batch of the verification images')
    parser.add_argument('--repeat', type=int, default=0, help='timed runs per size (0: untimed)')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads(),
                        help='threads of PyTorch and onnxruntime when verifying')
    parser.add_argument('--record', help='JSON list to append the verification figures to')
    add_cfg_options_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    scope = cfg.get('default_scope')
    what = args.what or next((w for w, s in WHATS.items() if s == scope), 'backbone')
    try:
        check_export_options(what, args.opset, scope)
    except ValueError as error:
        raise ToolError(str(error))
    model = build_export_model(cfg, what, args.checkpoint)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    names = export_onnx(model, args.out, args.shape, args.opset)
    print(f'wrote {args.out} ({osp.getsize(args.out) / 2 ** 20:.1f} MB, opset {args.opset}, '
          f'outputs {names}); dynamic axes: batch, height, width')
    if not args.verify_sizes:
        return
    torch.set_num_threads(args.threads)
    session = onnx_session(args.out, threads=args.threads)
    results = []
    for size in args.verify_sizes:
        result = compare_with_torch(model, session, size, batch=args.batch, repeat=args.repeat)
        results.append(result)
        line = (f'{size[0]}x{size[1]}: max abs diff {max(result["max_abs_diff"]):.3g} '
                f'(per output {", ".join(f"{d:.2g}" for d in result["max_abs_diff"])}; '
                f'largest |value| {max(result["max_abs_value"]):.3g})')
        if args.repeat:
            line += (f'; PyTorch {result["torch_seconds"]:.3f} s, onnxruntime '
                     f'{result["onnxruntime_seconds"]:.3f} s')
        print(line, flush=True)
    if args.record:
        append_json(args.record, dict(
            config=osp.relpath(osp.abspath(args.config)), checkpoint=args.checkpoint, what=what,
            cfg_options=args.cfg_options or {}, opset=args.opset,
            exporter='torch.onnx dynamo=False',
            traced_at=list(args.shape), threads=args.threads,
            onnxruntime=onnxruntime.__version__, cpu=platform.processor() or None,
            load_average=os.getloadavg(), results=results))
        print(f'recorded in {args.record}')


if __name__ == '__main__':
    sys.exit(exit_status(main))
