"""Convert a timm CoAtNet checkpoint (.pth / .bin / .safetensors) to an mmcoatnet backbone checkpoint.

    python tools/model_converters/timm2mmcoatnet.py SRC DST [--arch NAME]

DST's suffix picks the format: .safetensors, or a torch pickle ({'state_dict': ..., 'meta': ...})
for anything else. Without --arch the architecture is recognised from the keys and shapes.
"""
import argparse
import sys

import torch

from mmcoatnet.checkpoint import (arch_signature, convert_timm_state_dict, guess_architectures,
                                  is_timm_coatnet, read_checkpoint, resize_tables, unwrap_state_dict)
from mmcoatnet.models.archs import ARCH_SETTINGS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Convert a timm CoAtNet checkpoint to mmcoatnet.')
    parser.add_argument('src', help='timm checkpoint: .pth, .bin or .safetensors')
    parser.add_argument('dst', help='output: .safetensors, or .pth for a torch checkpoint')
    parser.add_argument('--arch', choices=sorted(ARCH_SETTINGS),
                        help='architecture of the checkpoint (default: recognised from its keys)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    state = unwrap_state_dict(read_checkpoint(args.src))
    if not is_timm_coatnet(state):
        print(f'error: {args.src} is not a timm CoAtNet checkpoint (no timm attention keys); '
              'mmcoatnet checkpoints load directly through init_cfg', file=sys.stderr)
        return 2
    converted = convert_timm_state_dict(state)
    arch = args.arch
    if arch is None:
        guesses = guess_architectures(converted)
        arch = guesses[0] if guesses else None
    if arch is not None:
        signature = arch_signature(arch)
        resize_tables(converted, signature)
        unmapped = sorted(k for k, v in converted.items()
                          if k not in signature or tuple(v.shape) != signature[k])
        missing = sorted(k for k in signature if k not in converted and 'num_batches' not in k)
    else:
        unmapped, missing = [], []
    params = sum(v.numel() for k, v in converted.items()
                 if v.is_floating_point() and not k.endswith(('running_mean', 'running_var')))
    print(f'architecture: {arch or "not in the architecture table (custom)"}')
    print(f'parameters: {params / 1e6:.2f}M in {len(converted)} tensors '
          f'(classifier dropped: {len(state) - len(converted)} tensors)')
    if unmapped:
        print(f'keys that do not fit {arch}: {", ".join(unmapped)}')
    if missing:
        print(f'{arch} keys the checkpoint lacks: {", ".join(missing)}')
    converted = {k: v.contiguous() for k, v in converted.items()}
    meta = {'arch': arch or 'custom', 'source': args.src, 'converter': 'timm2mmcoatnet'}
    if args.dst.endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file(converted, args.dst, metadata=meta)
    else:
        torch.save({'state_dict': converted, 'meta': meta}, args.dst)
    print(f'saved {args.dst}')
    return 1 if (unmapped or missing) and args.arch else 0


if __name__ == '__main__':
    sys.exit(main())
