"""Checks the installed mmcv's compiled ops after an install: nms and roi_align on CPU tensors
always, on CUDA tensors too where a GPU is visible (against the CPU results); a CUDA build without
a GPU is checked for having its CUDA ops compiled in, a CPU build for having none. The same check
for every stack: OpenMMLab's mmcv (tools/install.sh, tools/install_oldest.sh) and OneDL's fork,
onedl-mmcv, which imports as mmcv too (tools/install_newest.sh).

    python tools/dev/check_mmcv_ops.py cpu|cuda
"""
import argparse
import sys

import torch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('ops', choices=['cpu', 'cuda'], help='the ops mmcv was built with')
    return parser.parse_args(argv)


def main(argv=None):
    ops = parse_args(argv).ops
    import mmcv
    from mmcv.ops import get_compiling_cuda_version, nms, roi_align

    compiled = get_compiling_cuda_version()  # 'not available' without CUDA ops
    if ops == 'cuda':
        assert compiled == torch.version.cuda, \
            f'mmcv CUDA ops compiled for {compiled}, torch is CUDA {torch.version.cuda}'
    else:
        assert compiled == 'not available', f'a CPU-op build has CUDA ops ({compiled})'
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    feats = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 3, 16, 16) / 100
    rois = torch.tensor([[0., 1., 1., 9., 9.], [1., 0., 2., 15., 11.]])
    _, keep = nms(boxes, scores, 0.5)
    assert keep.tolist() == [0, 2], keep
    pooled = roi_align(feats, rois, (7, 7), 1.0, 2, 'avg', True)
    assert pooled.shape == (2, 3, 7, 7) and torch.isfinite(pooled).all()
    where = 'CPU'
    if ops == 'cuda' and torch.cuda.is_available():
        _, keep_gpu = nms(boxes.cuda(), scores.cuda(), 0.5)
        assert keep_gpu.cpu().tolist() == keep.tolist(), keep_gpu
        torch.testing.assert_close(
            roi_align(feats.cuda(), rois.cuda(), (7, 7), 1.0, 2, 'avg', True).cpu(), pooled)
        where = f'CPU and {torch.cuda.get_device_name(0)}'
    print(f'mmcv ops check (mmcv {mmcv.__version__}, torch {torch.__version__}): nms, roi_align '
          f'on {where}; CUDA ops: {compiled}')


if __name__ == '__main__':
    sys.exit(main())
