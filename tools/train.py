"""Train a detector, segmentor or classifier with a CoAtNet backbone.

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--resume [PATH]] [--auto-scale-lr]
                          [--data-root DIR] [--cfg-options K=V ...]
                          [--launcher none|pytorch|slurm|mpi]

The config's default_scope ('mmdet', 'mmseg' or 'mmpretrain') decides which library's registries
are used.
"""
import argparse
import sys

from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmcoatnet.utils.cli import (
    ToolError,
    add_run_arguments,
    default_device,
    exit_status,
    export_local_rank,
    load_run_config,
    refuse_amp_without_gpu,
    use_amp_optim_wrapper,
)
from mmcoatnet.utils.distributed import prepare_distributed
from mmcoatnet.utils.preflight import check_data, check_pretrained


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector / segmentor / classifier')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='enable automatic-mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate with the total batch size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from PATH, or from the latest checkpoint in the work dir '
                             'when no path is given')
    add_run_arguments(parser, work_dir_help='the dir to save logs and models')
    args = parser.parse_args(argv)
    export_local_rank(args.local_rank)
    return args


def build_config(args) -> Config:
    cfg = load_run_config(args)
    if args.amp:
        refuse_amp_without_gpu(default_device(), instead='train')
        use_amp_optim_wrapper(cfg)
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise ToolError('--auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if cfg.get('compile'):  # mmengine's switch compiles train_step, optimizer step included
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='CompiledTrainingHook')]
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_config(args)
    check_data(cfg, splits=('train', 'val'))
    check_pretrained(cfg)  # the runner initialises weights before it resumes
    prepare_distributed(cfg)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    sys.exit(exit_status(main))
