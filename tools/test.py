"""Evaluate a trained detector, segmentor or classifier checkpoint.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE] [--show-dir DIR] [--tta]
                         [--data-root DIR] [--cfg-options K=V ...]
                         [--launcher none|pytorch|slurm|mpi]

--out writes the raw predictions (mmdet: a pickle of results; mmseg: a folder of label maps);
--show-dir draws predictions over the images into WORK_DIR/<timestamp>/SHOW_DIR; --tta evaluates
with the config's test-time augmentation (tta_model and tta_pipeline: mmseg's multi-scale + flip).
"""
import argparse
import sys

from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmcoatnet.utils.cli import (
    ToolError,
    add_run_arguments,
    exit_status,
    export_local_rank,
    load_run_config,
)
from mmcoatnet.utils.distributed import prepare_distributed
from mmcoatnet.utils.preflight import check_data, check_load_from


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a detector / segmentor / '
                                     'classifier')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump predictions: a .pkl file (mmdet) or a folder (mmseg)')
    parser.add_argument('--show-dir', help='directory, under the work dir, for drawn predictions')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation: the config's tta_pipeline and tta_model")
    add_run_arguments(parser, work_dir_help='the directory to save the evaluation metrics')
    args = parser.parse_args(argv)
    export_local_rank(args.local_rank)
    return args


def enable_drawing(cfg: Config, show_dir: str) -> None:
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise ToolError('--show-dir needs a visualization hook in default_hooks')
    hook.draw = True
    hook.interval = 1
    if cfg.default_scope == 'mmdet':
        hook.test_out_dir = show_dir
    else:
        cfg.visualizer.save_dir = show_dir
        cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]


def enable_tta(cfg: Config) -> None:
    """The config's test-time augmentation, as mmseg's and mmdet's own test tools set it up."""
    missing = [key for key in ('tta_model', 'tta_pipeline') if key not in cfg]
    if missing:
        raise ToolError(f'--tta needs {" and ".join(missing)} in the config (mmseg\'s '
                        'ADE20K configs define both)')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def main(argv=None):
    args = parse_args(argv)
    cfg = load_run_config(args)
    cfg.load_from = args.checkpoint
    # the trained checkpoint holds every weight: do not read the ImageNet one
    if cfg.model.get('backbone', {}).get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None
    if args.tta:
        enable_tta(cfg)
    check_load_from(cfg)
    check_data(cfg, splits=('test',))
    prepare_distributed(cfg)
    if args.show_dir:
        enable_drawing(cfg, args.show_dir)
    if args.out and cfg.default_scope == 'mmseg':
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    if args.out and cfg.default_scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    runner.test()


if __name__ == '__main__':
    sys.exit(exit_status(main))
