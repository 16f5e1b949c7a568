"""Command-line plumbing the tools share: a config loaded with --cfg-options and its work dir, the
launcher arguments and LOCAL_RANK, and the --amp switch (refused without a GPU). Problems with what
the user asked for raise :class:`ToolError`, which the tools print and exit on."""
import os
import os.path as osp
from typing import Callable, Optional, Union

from ..torch_compat import TorchTooOldError
from .data_root import set_data_root
from .errors import ToolError


def exit_status(main: Callable[[], Optional[int]]) -> Union[int, str]:
    """What a tool hands to ``sys.exit``: ``main()``'s status, or the message of a
    :class:`ToolError` or of a feature that needs a newer torch (which sys.exit prints, exiting
    1). The library never exits itself."""
    try:
        return main() or 0
    except (ToolError, TorchTooOldError) as error:
        return f'error: {error}'


def default_device() -> str:
    import torch
    return 'cuda' if torch.cuda.is_available() else 'cpu'


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


def set_work_dir(cfg, config_path: str, work_dir: Optional[str] = None) -> None:
    """``work_dir`` (from --work-dir), else the config's own, else ./work_dirs/<config name>."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def add_run_arguments(parser, work_dir_help: str) -> None:
    """The options tools/train.py and tools/test.py share: --work-dir, --data-root, --cfg-options
    and the launcher's."""
    parser.add_argument('--work-dir', help=work_dir_help)
    parser.add_argument('--data-root', help="the dataset's folder: moves every dataset and "
                        "evaluator path of the config from the config's data_root to it")
    add_cfg_options_argument(parser)
    add_launcher_arguments(parser)


def load_run_config(args):
    """The config of a train or test run: --cfg-options merged, --data-root applied, the launcher
    and the work dir set."""
    cfg = load_config(args.config, args.cfg_options)
    if args.data_root:
        set_data_root(cfg, args.data_root)
    cfg.launcher = args.launcher
    set_work_dir(cfg, args.config, args.work_dir)
    return cfg


def add_launcher_arguments(parser) -> None:
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    # torch.distributed.launch passes --local_rank (--local-rank since torch 2.0); torchrun sets
    # LOCAL_RANK itself
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def export_local_rank(local_rank: int) -> None:
    """LOCAL_RANK for mmengine's launcher setup, from --local-rank unless the launcher set it."""
    os.environ.setdefault('LOCAL_RANK', str(local_rank))


def refuse_amp_without_gpu(device: str, instead: str) -> None:
    """Raises :class:`ToolError` for --amp on a device other than a GPU; ``instead`` names what to
    do without it ('train', 'measure')."""
    if not device.startswith('cuda'):
        raise ToolError("--amp needs a GPU (mmengine's AmpOptimWrapper does not run on the CPU); "
                        f'{instead} without --amp here')


def use_amp_optim_wrapper(cfg) -> None:
    """Train through mmengine's AmpOptimWrapper (float16, dynamic loss scaling), unless the config
    already does, in which case its own settings stand."""
    if cfg.optim_wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.dtype = 'float16'
        cfg.optim_wrapper.loss_scale = 'dynamic'
