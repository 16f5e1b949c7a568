"""The operators that take a CoAtNet backbone's training step (the step `make benchmark` times, on a
batch-1 image), by torch.profiler's self CPU time: what to attack first when the step is slow.

    python tools/analysis_tools/profile_train_step.py [--arch coatnet-0-rw] [--shape 800 1344]
        [--top 15] [--threads 2] [--label TEXT] [--record docs/results/train_profile_cpu.json]

One untimed step, one timed step, then one profiled step. --record appends the step time and the
top operators to a JSON list (an entry with the same --label is replaced).
"""
import argparse
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from mmcoatnet.analysis.backbone_step import backbone_train_step
from mmcoatnet.models import CoAtNet
from mmcoatnet.utils.cli import exit_status
from mmcoatnet.utils.results import append_json
from mmcoatnet.utils.sizes import add_shape_argument


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='coatnet-0-rw')
    add_shape_argument(parser, default=(800, 1344), help='input size')
    parser.add_argument('--top', type=int, default=15, help='operators to list')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument('--label', default='', help='names the entry (e.g. a commit)')
    parser.add_argument('--record', help='JSON list to append the figures to')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CoAtNet(args.arch).train()
    image = torch.randn(1, 3, *args.shape)
    backbone_train_step(model, image)
    start = time.perf_counter()
    backbone_train_step(model, image)
    seconds = time.perf_counter() - start
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        backbone_train_step(model, image)
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    top = [dict(name=e.key, calls=e.count, self_seconds=e.self_cpu_time_total / 1e6,
                share=e.self_cpu_time_total / total) for e in events[:args.top]]
    print(f'{args.arch} at {args.shape[0]}x{args.shape[1]}: step {seconds:.2f} s '
          f'({args.threads} threads); profiled self CPU time {total / 1e6:.2f} s')
    for item in top:
        print(f"  {item['share']:6.1%} {item['self_seconds']:7.2f} s {item['calls']:6d} calls  "
              f"{item['name']}")
    if args.record:
        append_json(args.record, dict(label=args.label, arch=args.arch, shape=list(args.shape),
                                      threads=args.threads, step_seconds=seconds,
                                      profiled_self_seconds=total / 1e6, top=top),
                    key=lambda entry: entry.get('label'))
        print(f'recorded in {args.record}')


if __name__ == '__main__':
    sys.exit(exit_status(main))
