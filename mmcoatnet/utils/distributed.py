"""torch.distributed set-up that mmengine 0.10.7 leaves to CUDA: CPU processes (gloo) and timeouts.

mmengine's pytorch launcher calls ``torch.cuda.set_device`` and wraps the model in DDP with
``device_ids=[LOCAL_RANK]``; neither works without a GPU. On a machine without CUDA the process
group is started here, with the config's backend and timeout, and DDP is told the model is on the
CPU, with BatchNorm synchronised by ``engine.sync_bn.CPUDistributedDataParallel``. With CUDA nothing
changes but the timeout, which mmengine would otherwise leave at its default.
"""
import datetime
import os

import torch
import torch.distributed as dist
from mmengine.config import Config

from ..engine.sync_bn import CPUDistributedDataParallel
from .errors import ToolError

DEFAULT_TIMEOUT_S = 1800


def prepare_distributed(cfg: Config) -> None:
    if cfg.get('launcher', 'none') == 'none':
        return
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    timeout = dist_cfg.setdefault('timeout', DEFAULT_TIMEOUT_S)  # seconds; mmengine converts it
    if torch.cuda.is_available():
        return
    backend = dist_cfg.get('backend', 'gloo')
    if backend == 'nccl':
        raise ToolError('env_cfg.dist_cfg.backend is nccl, which needs GPUs; on CPUs use '
                        '--cfg-options env_cfg.dist_cfg.backend=gloo')
    if cfg.launcher == 'pytorch' and not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout),
                                rank=int(os.environ['RANK']),
                                world_size=int(os.environ['WORLD_SIZE']))
    if cfg.get('model_wrapper_cfg') is None:
        # torch's SyncBN is GPU-only: the wrapper synchronises BN its own way on CPUs
        cfg.model_wrapper_cfg = dict(
            type=CPUDistributedDataParallel.__name__, sync_bn=cfg.pop('sync_bn', None) is not None,
            device_ids=None, broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
