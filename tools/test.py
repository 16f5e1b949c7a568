"""Evaluate a trained detector or segmentor checkpoint.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE] [--show-dir DIR]
                         [--cfg-options K=V ...] [--launcher none|pytorch|slurm|mpi]

--out writes the raw predictions (mmdet: a pickle of results; mmseg: a folder of label maps);
--show-dir draws predictions over the images into WORK_DIR/<timestamp>/SHOW_DIR.
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmcoatnet.distributed import prepare_distributed
from mmcoatnet.preflight import check_data, check_load_from


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a detector / segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the evaluation metrics')
    parser.add_argument('--out', help='dump predictions: a .pkl file (mmdet) or a folder (mmseg)')
    parser.add_argument('--show-dir', help='directory, under the work dir, for drawn predictions')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def enable_drawing(cfg: Config, show_dir: str) -> None:
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise SystemExit('error: --show-dir needs a visualization hook in default_hooks')
    hook.draw = True
    hook.interval = 1
    if cfg.default_scope == 'mmdet':
        hook.test_out_dir = show_dir
    else:
        cfg.visualizer.save_dir = show_dir
        cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    # the trained checkpoint holds every weight: do not read the ImageNet one
    if cfg.model.get('backbone', {}).get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None
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
    main()
