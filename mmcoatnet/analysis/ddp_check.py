"""One deterministic training step of a small CoAtNet with SyncBN, its batch split over the
processes of a torch.distributed run or whole in one process: the loss, gradients and BatchNorm
statistics it writes must agree. On CPUs with gloo (``engine.sync_bn``'s SyncBN;
tests/dist_syncbn_check.py) and on GPUs with NCCL and torch's SyncBatchNorm (``make gpu-check``)."""
import os
from typing import Dict, List

import torch
import torch.distributed as dist

GLOBAL_BATCH = 4
ARCH = dict(stem_channels=(8, 16), depths=(2, 1, 1, 1), channels=(16, 32, 32, 32))


def ddp_step(out: str, device_type: str = 'cpu', with_cp: bool = False) -> str:
    """This process's part of the step (WORLD_SIZE, RANK and LOCAL_RANK from the launcher; one
    process without them), written to ``<out>_rank<r>.pt`` (loss averaged over the processes, DDP's
    averaged gradients, running statistics); returns the path. ``with_cp``: every block recomputed
    in backward. On CUDA, TF32 is off and cuDNN deterministic: only the split may differ."""
    from mmengine.model import revert_sync_batchnorm

    from ..engine.sync_bn import CPUDistributedDataParallel
    from ..models import CoAtNet

    world = int(os.environ.get('WORLD_SIZE', 1))
    rank = int(os.environ.get('RANK', 0))
    device = torch.device('cpu')
    if device_type == 'cuda':
        device = torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)))
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    torch.manual_seed(0)
    images = torch.randn(GLOBAL_BATCH, 3, 64, 64)
    # the configs' way: SyncBN in the config, which mmengine reverts to BN in one process
    model = CoAtNet(arch=ARCH, norm_cfg=dict(type='SyncBN', requires_grad=True), with_cp=with_cp)
    if world == 1:
        model = revert_sync_batchnorm(model)
    model.init_weights()
    model = model.to(device).train()
    if world > 1:
        dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
        if device.type == 'cuda':  # torch's SyncBatchNorm, as mmengine wraps a GPU model
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index], broadcast_buffers=False)
        else:
            model = CPUDistributedDataParallel(module=model, device_ids=None,
                                               broadcast_buffers=False)
            assert any(type(m).__name__ == 'DeviceAgnosticSyncBN' for m in model.modules())
    per_rank = GLOBAL_BATCH // world
    local = images[rank * per_rank:(rank + 1) * per_rank].to(device)
    outs = model(local)
    # a per-image mean, so DDP's gradient average equals the single-process gradient
    loss = sum((o - 0.1).square().mean() for o in outs)
    loss.backward()
    total = loss.detach().clone()
    if world > 1:
        dist.all_reduce(total)
        total /= world
    module = model.module if world > 1 else model
    grads = {n: p.grad.detach().cpu() for n, p in module.named_parameters()}
    stats = {n: b.detach().cpu() for n, b in module.named_buffers() if 'running' in n}
    path = f'{out}_rank{rank}.pt'
    torch.save(dict(loss=total.cpu(), grads=grads, stats=stats), path)
    if world > 1:
        dist.destroy_process_group()
    return path


def largest_difference(one: Dict, others: List[Dict], rtol: float) -> Dict:
    """How far the multi-process runs' results (``others``, one per rank) are from the one-process
    run's, as torch.testing.assert_close measures: the largest ``|got - expected| - rtol *
    |expected|`` of any element (at most atol to agree), with the tensor it is in and that tensor's
    largest absolute difference. Gradients that are zero but for rounding (a bias before a
    BatchNorm) have no relative error to speak of: the absolute part covers them."""
    worst = dict(excess=0.0, tensor=None, max_abs_difference=0.0)
    for other in others:
        pairs = [('loss', other['loss'], one['loss'])]
        for kind in ('grads', 'stats'):
            if set(other[kind]) != set(one[kind]):
                return dict(excess=float('inf'), tensor=f'{kind}: different names',
                            max_abs_difference=float('inf'))
            pairs += [(f'{kind}.{name}', other[kind][name], value)
                      for name, value in one[kind].items()]
        for name, got, expected in pairs:
            difference = (got.double() - expected.double()).abs()
            excess = (difference - rtol * expected.double().abs()).max().item()
            if excess > worst['excess'] or excess != excess:
                worst = dict(excess=excess, tensor=name,
                             max_abs_difference=difference.max().item())
    return worst
