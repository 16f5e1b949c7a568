"""The whole Mask R-CNN (image to boxes, labels and masks) through mmdeploy 1.3.1 to ONE ONNX file
with dynamic batch, height and width, and its ONNX Runtime results against PyTorch's.

    python tools/deployment/mmdeploy_export.py CONFIG [CHECKPOINT] --work-dir DIR
        [--deploy-cfg configs/deploy/instance-seg_onnxruntime_dynamic.py] [--shape H W]
        [--verify-sizes 97x61 333x517 ...] [--record FILE.json] [--cfg-options K=V ...]

Writes DIR/end2end.onnx (mmdeploy's torch2onnx with the torch 2.13 workarounds of
mmcoatnet/deployment/mmdeploy_compat.py), traced on a random HxW image (--shape, default 160x160)
passed through the config's test pipeline. Without CHECKPOINT the weights are random, saved to
DIR/random_weights.pth so that both sides of the check use them. --verify-sizes runs random images
of each size through the test pipeline into mmdeploy's ONNX Runtime model and into mmdet's PyTorch
detector, and prints how their detections agree: against mmdet as it is, and against mmdet with its
RPN's NMS across FPN levels, as mmdeploy's graph runs it (mmcoatnet/deployment/mmdeploy_compat.py).
mmdeploy's dynamic graph also clips boxes to its input, which the data preprocessor pads (to a
multiple of 32 in mmdet's configs), where mmdet clips them to the image: boxes at the bottom and
right edges agree only with --cfg-options model.data_preprocessor.pad_size_divisor=1 (the backbone
takes any size).
"""
import argparse
import os
import os.path as osp
import sys

import numpy as np
import torch

from mmcoatnet.deployment.mmdeploy_compat import (
    backend_and_pytorch_detectors,
    compare_detections,
    export_detector,
    import_mmdeploy,
    mmdeploy_site,
    rpn_nms_across_levels,
)
from mmcoatnet.utils.cli import ToolError, add_cfg_options_argument, exit_status, load_config
from mmcoatnet.utils.results import write_json
from mmcoatnet.utils.sizes import add_shape_argument, add_sizes_argument

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_DEPLOY_CFG = osp.join(ROOT, 'configs', 'deploy', 'instance-seg_onnxruntime_dynamic.py')


def random_image(size, seed: int) -> np.ndarray:
    return (np.random.RandomState(seed).rand(*size, 3) * 255).astype(np.uint8)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?', help='weights (default: random, saved)')
    parser.add_argument('--work-dir', required=True)
    parser.add_argument('--deploy-cfg', default=DEFAULT_DEPLOY_CFG)
    add_shape_argument(parser, default=(160, 160), help='image size to trace at')
    add_sizes_argument(parser, '--verify-sizes', default=[], help='image sizes to compare at')
    parser.add_argument('--record', help='JSON file to write the comparison to')
    add_cfg_options_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if mmdeploy_site() not in sys.path:  # mmdeploy's own directory (tools/install.sh)
        sys.path.append(mmdeploy_site())
    try:
        import_mmdeploy()
    except RuntimeError as error:
        raise ToolError(str(error))
    cfg = load_config(args.config, args.cfg_options)
    if cfg.get('default_scope') != 'mmdet':
        raise ToolError(f'{args.config} is not an mmdet config (default_scope '
                        f'{cfg.get("default_scope")!r}); mmdeploy_export exports detectors, '
                        'tools/deployment/pytorch2onnx.py --what segmentor exports segmentors')
    os.makedirs(args.work_dir, exist_ok=True)
    checkpoint = args.checkpoint
    if checkpoint is None:
        from mmdet.apis import init_detector
        torch.manual_seed(0)
        checkpoint = osp.join(args.work_dir, 'random_weights.pth')
        torch.save(dict(state_dict=init_detector(cfg, None, device='cpu').state_dict(), meta={}),
                   checkpoint)
        print(f'no checkpoint: random weights, saved to {checkpoint}')
    onnx_file = export_detector(cfg, args.deploy_cfg, args.work_dir, random_image(args.shape, 0),
                                checkpoint)
    print(f'wrote {onnx_file} ({osp.getsize(onnx_file) / 2 ** 20:.1f} MB)')
    if not args.verify_sizes:
        return
    processor, backend, detector = backend_and_pytorch_detectors(cfg, args.deploy_cfg, onnx_file,
                                                                 checkpoint)
    results = []
    for seed, size in enumerate(args.verify_sizes, start=1):
        inputs, _ = processor.create_input(random_image(size, seed))
        with torch.no_grad():
            got = backend.test_step(inputs)[0].pred_instances
            expected = detector.test_step(inputs)[0].pred_instances
            with rpn_nms_across_levels():
                expected_across_levels = detector.test_step(inputs)[0].pred_instances
        result = dict(image=list(size), network_input=list(inputs['inputs'][0].shape[1:]),
                      mmdet=compare_detections(expected, got),
                      mmdet_rpn_nms_across_levels=compare_detections(expected_across_levels, got))
        results.append(result)
        print(f'{size[0]}x{size[1]} (network input {result["network_input"][0]}x'
              f'{result["network_input"][1]} before padding):')
        for name in ('mmdet', 'mmdet_rpn_nms_across_levels'):
            r = result[name]
            print(f'  vs {name}: {r["pytorch_detections"]} PyTorch / {r["backend_detections"]} '
                  f'ONNX Runtime detections, {r["unmatched"]} unmatched, box IoU >= '
                  f'{r["min_box_iou"]:.5f}, score diff <= {r["max_score_diff"]:.2g}, mask pixels '
                  f'differing <= {r["max_mask_pixel_diff"]:.3%}', flush=True)
    if args.record:
        write_json(args.record, dict(config=args.config, checkpoint=args.checkpoint,
                                     cfg_options=args.cfg_options or {}, results=results))


if __name__ == '__main__':
    sys.exit(exit_status(main))
