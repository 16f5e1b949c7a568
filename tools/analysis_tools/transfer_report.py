"""The pre-training -> fine-tuning transfer of `make demo-transfer`, as a table.

    python tools/analysis_tools/transfer_report.py WORK_DIR [--out report.json]

WORK_DIR holds the runs tools/demo.sh transfer makes: pretrain/, and
{det,seg}_{scratch,pretrained}/. For each task it reads the validation curve of both fine-tuning
runs (mmengine's scalars.json) and reports each run's final metric and the first validation step at
which the pre-trained start reaches the scratch run's final value, as a fraction of the budget.
"""
import argparse
import glob
import json
import os.path as osp
import sys

from mmcoatnet.utils.results import write_json

TASKS = {  # task: (metric keys, step unit)
    'det': (('coco/bbox_mAP', 'coco/segm_mAP'), 'epoch'),
    'seg': (('mIoU',), 'iteration'),
}


def validation_curve(run_dir: str, metric: str):
    """[(step, value)] of a run's validation records, in order."""
    curve = []
    for log in sorted(glob.glob(osp.join(run_dir, '*', 'vis_data', 'scalars.json'))):
        with open(log) as f:
            for line in f:
                record = json.loads(line)
                if metric in record:
                    curve.append((record['step'], record[metric]))
    return curve


def pretraining_accuracy(run_dir: str):
    curve = validation_curve(run_dir, 'accuracy/top1')
    return curve[-1][1] if curve else None


def compare(work_dir: str) -> dict:
    rows = []
    for task, (metrics, unit) in TASKS.items():
        for metric in metrics:
            scratch = validation_curve(osp.join(work_dir, f'{task}_scratch'), metric)
            pretrained = validation_curve(osp.join(work_dir, f'{task}_pretrained'), metric)
            if not scratch or not pretrained:
                continue
            budget, target = scratch[-1]
            reached = next((step for step, value in pretrained if value >= target), None)
            rows.append(dict(task=task, metric=metric, unit=unit, budget=budget,
                             scratch_final=target, pretrained_final=pretrained[-1][1],
                             scratch_curve=scratch, pretrained_curve=pretrained,
                             pretrained_reaches_scratch_final_at=reached,
                             fraction_of_budget=None if reached is None else reached / budget))
    return dict(pretraining_top1=pretraining_accuracy(osp.join(work_dir, 'pretrain')), rows=rows)


def markdown(report: dict) -> str:
    lines = ['| task | metric | budget | from scratch | pre-trained '
             '| pre-trained reaches scratch\'s final value at |', '|---|---|---|---:|---:|---|']
    for row in report['rows']:
        reached = row['pretrained_reaches_scratch_final_at']
        where = (f"{row['unit']} {reached} ({row['fraction_of_budget']:.0%} of the budget)"
                 if reached is not None else 'not within the budget')
        lines.append(f"| {row['task']} | {row['metric']} | {row['budget']} {row['unit']}s | "
                     f"{row['scratch_final']:.3f} | {row['pretrained_final']:.3f} | {where} |")
    if report['pretraining_top1'] is not None:
        lines.append(f"\nToy classification pre-training: top-1 {report['pretraining_top1']:.2f}% "
                     'on its validation split.')
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('work_dir')
    parser.add_argument('--out', help='also write the report as JSON')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    report = compare(args.work_dir)
    if not report['rows']:
        print(f'no fine-tuning runs with validation records under {args.work_dir}', file=sys.stderr)
        return 1
    print(markdown(report))
    if args.out:
        write_json(args.out, report)
    return 0


if __name__ == '__main__':
    sys.exit(main())
