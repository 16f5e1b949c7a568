"""What the scripts under tools/ share: a config loaded with --cfg-options and its work dir, the
launcher arguments and LOCAL_RANK, the --amp switch (refused without a GPU), and the process's
resident memory.

Only the standard library is imported at module level: benchmark.py also loads this file under
timm's own Python, where neither mmcv nor this package is installed.
"""
import os
import os.path as osp
import resource
from typing import Callable, Optional

AMP_NEEDS_GPU = ("--amp needs a GPU (mmengine's AmpOptimWrapper does not run on the CPU); "
                 '{instead} without --amp here')


def default_device() -> str:
    import torch
    return 'cuda' if torch.cuda.is_available() else 'cpu'


# ------------------------------------------------------------------------------- config and launch

def add_cfg_options_argument(parser, help: str = 'override config settings, e.g. '
                             'model.backbone.with_cp=True') -> None:
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help=help)


def load_config(path: str, cfg_options: Optional[dict] = None):
    """The mmengine Config at ``path`` (its custom_imports imported, which registers CoAtNet) with
    ``cfg_options`` (from --cfg-options) merged in."""
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def parse_size(text: str):
    """An ``HxW`` command-line size (e.g. 333x517) as (H, W), for argparse's ``type=``."""
    import argparse
    try:
        height, width = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'a size is HxW, e.g. 333x517, got {text!r}')
    return height, width


def set_work_dir(cfg, config_path: str, work_dir: Optional[str] = None) -> None:
    """``work_dir`` (from --work-dir), else the config's own, else ./work_dirs/<config name>."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def add_launcher_arguments(parser) -> None:
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    # torch.distributed.launch passes --local_rank (--local-rank since torch 2.0); torchrun sets
    # LOCAL_RANK itself
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def export_local_rank(local_rank: int) -> None:
    """LOCAL_RANK for mmengine's launcher setup, from --local-rank unless the launcher set it."""
    os.environ.setdefault('LOCAL_RANK', str(local_rank))


# ---------------------------------------------------------------------------------------------- AMP

def refuse_amp_without_gpu(device: str, instead: str,
                           fail: Optional[Callable[[str], None]] = None) -> None:
    """Stops a tool asked for --amp on a device other than a GPU; ``instead`` names what to do
    without it ('train', 'measure'). ``fail`` reports the message (e.g. ``parser.error``); by
    default a SystemExit, which prints it without a traceback."""
    if device.startswith('cuda'):
        return
    message = AMP_NEEDS_GPU.format(instead=instead)
    if fail is not None:
        fail(message)
    raise SystemExit(f'error: {message}')


def use_amp_optim_wrapper(cfg) -> None:
    """Train through mmengine's AmpOptimWrapper (float16, dynamic loss scaling), unless the config
    already does, in which case its own settings stand."""
    if cfg.optim_wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.dtype = 'float16'
        cfg.optim_wrapper.loss_scale = 'dynamic'


# ----------------------------------------------------------------------------------- process memory

def current_rss_bytes() -> int:
    """This process's resident memory now (Linux)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def peak_rss_bytes() -> int:
    """This process's highest resident memory so far: the kernel's VmHWM of its own address space.
    Not getrusage's ru_maxrss, which keeps across exec the RSS of the parent it was forked from
    (a 2 GB pytest process made a 0.6 GB tool run read 2 GB)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def gib(num_bytes) -> str:
    return f'{num_bytes / 2 ** 30:.2f}'
