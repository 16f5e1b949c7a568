"""Convert a timm CoAtNet checkpoint (.pth / .bin / .safetensors) to an mmcoatnet checkpoint.

    python tools/model_converters/timm2mmcoatnet.py SRC DST [--arch NAME] [--keep-head]

By default the backbone alone, for detection and segmentation (the classifier is dropped). With
``--keep-head`` a whole mmpretrain ``ImageClassifier`` (``backbone.*`` and a ``CoAtNetClsHead``'s
``head.norm.*`` / ``head.fc.*``), which mmpretrain's tools/test.py evaluates and which detection
configs still load as a backbone. DST's suffix picks the format: .safetensors, or a torch pickle
({'state_dict': ..., 'meta': ...}) for anything else. Without --arch the architecture is
recognised from the keys and shapes. Bias tables are kept at the checkpoint's own size (a 384
checkpoint stays 384): the backbone resizes them at load for its ``pretrain_img_size``.
"""
import argparse
import os
import os.path as osp
import sys

import torch

from mmcoatnet.checkpoint import (
    convert_timm_state_dict,
    guess_architectures,
    is_timm_coatnet,
    read_checkpoint,
    timm_classifier_head,
    unwrap_state_dict,
)
from mmcoatnet.models import ARCH_SETTINGS, CoAtNet

S3_STRIDE = 16


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Convert a timm CoAtNet checkpoint to mmcoatnet.')
    parser.add_argument('src', help='timm checkpoint: .pth, .bin or .safetensors')
    parser.add_argument('dst', help='output: .safetensors, or .pth for a torch checkpoint')
    parser.add_argument('--arch', choices=sorted(ARCH_SETTINGS),
                        help='architecture of the checkpoint (default: recognised from its keys)')
    parser.add_argument('--keep-head', action='store_true',
                        help='keep the classifier: write an mmpretrain ImageClassifier checkpoint')
    return parser.parse_args(argv)


def pretrain_img_size(state) -> int:
    """The image size the bias tables were learned at, from the first S3 table (None: no tables,
    as in the rmlp models, which fit any size)."""
    tables = sorted(k for k in state if k.endswith('rel_pos.table'))
    if not tables:
        return None
    side = state[tables[0]].shape[-1]
    return (side + 1) // 2 * S3_STRIDE


def main(argv=None) -> int:
    args = parse_args(argv)
    checkpoint = read_checkpoint(args.src, logger='silent')
    state = unwrap_state_dict(checkpoint)
    if not is_timm_coatnet(state):
        print(f'error: {args.src} is not a timm CoAtNet checkpoint (no timm attention keys); '
              'mmcoatnet checkpoints load directly through init_cfg', file=sys.stderr)
        return 2
    converted = convert_timm_state_dict(state)
    signatures = CoAtNet.architecture_signatures()
    arch = args.arch
    if arch is None:
        guesses = guess_architectures(converted, signatures)
        arch = guesses[0] if guesses else None
    unmapped, missing = [], []
    if arch is not None:
        signature = signatures[arch]
        unmapped = sorted(k for k, v in converted.items() if k not in signature or (
            tuple(v.shape) != signature[k] and not k.endswith('rel_pos.table')))
        missing = sorted(k for k in signature if k not in converted and 'num_batches' not in k)
    params = sum(v.numel() for k, v in converted.items()
                 if v.is_floating_point() and not k.endswith(('running_mean', 'running_var')))
    img_size = pretrain_img_size(converted)
    print(f'architecture: {arch or "not in the architecture table (custom)"}')
    print(f'pre-training size: {img_size or "any (relative-position MLP, no tables)"}'
          + (f' (set pretrain_img_size={img_size})' if img_size and img_size != 224 else ''))
    print(f'parameters: {params / 1e6:.2f}M in {len(converted)} tensors '
          f'(classifier {"kept" if args.keep_head else "dropped"}: '
          f'{len(state) - len(converted)} tensors)')
    if unmapped:
        print(f'keys that do not fit {arch}: {", ".join(unmapped)}')
    if missing:
        print(f'{arch} keys the checkpoint lacks: {", ".join(missing)}')
    meta = {'arch': arch or 'custom', 'source': args.src, 'converter': 'timm2mmcoatnet',
            'pretrain_img_size': str(img_size or 'any')}
    if args.keep_head:
        head, final_norm = timm_classifier_head(state)
        if 'head.fc.weight' not in head:
            print(f'error: {args.src} has no classifier (head.fc) to keep', file=sys.stderr)
            return 2
        num_classes, in_channels = head['head.fc.weight'].shape
        head_cfg = dict(type='CoAtNetClsHead', num_classes=num_classes, in_channels=in_channels,
                        final_norm=final_norm)
        print(f'head: {head_cfg}')
        meta['head'] = repr(head_cfg)
        converted = {**{f'backbone.{k}': v for k, v in converted.items()}, **head}
    converted = {k: v.contiguous() for k, v in converted.items()}
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)  # e.g. checkpoints/
    if args.dst.endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file(converted, args.dst, metadata=meta)
    else:
        torch.save({'state_dict': converted, 'meta': meta}, args.dst)
    print(f'saved {args.dst}')
    return 1 if (unmapped or missing) and args.arch else 0


if __name__ == '__main__':
    sys.exit(main())
