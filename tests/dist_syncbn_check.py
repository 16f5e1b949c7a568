"""Run with torchrun (N processes) or plainly (1 process): the CoAtNet backbone with SyncBN under
DDP, one deterministic loss on a fixed global batch, split across the processes. Writes the loss
and the gradients (averaged by DDP) to OUT_rank<r>.pt.

    python -m torch.distributed.run --nproc_per_node 2 tests/dist_syncbn_check.py OUT
    python tests/dist_syncbn_check.py OUT
"""
import os
import sys

import torch
import torch.distributed as dist

from mmcoatnet.engine.sync_bn import CPUDistributedDataParallel
from mmcoatnet.models import CoAtNet

GLOBAL_BATCH = 4
ARCH = dict(stem_channels=(8, 16), depths=(2, 1, 1, 1), channels=(16, 32, 32, 32))


def main(out):
    world = int(os.environ.get('WORLD_SIZE', 1))
    rank = int(os.environ.get('RANK', 0))
    torch.manual_seed(0)
    images = torch.randn(GLOBAL_BATCH, 3, 64, 64)
    # the configs' way: SyncBN in the config, which mmengine reverts to BN in one process
    model = CoAtNet(arch=ARCH, norm_cfg=dict(type='SyncBN', requires_grad=True))
    if world == 1:
        from mmengine.model import revert_sync_batchnorm
        model = revert_sync_batchnorm(model)
    model.init_weights()
    model.train()
    if world > 1:
        dist.init_process_group('gloo')
        model = CPUDistributedDataParallel(module=model, device_ids=None, broadcast_buffers=False)
        assert any(type(m).__name__ == 'DeviceAgnosticSyncBN' for m in model.modules())
    per_rank = GLOBAL_BATCH // world
    local = images[rank * per_rank:(rank + 1) * per_rank]
    outs = model(local)
    # a per-image mean, so DDP's gradient average equals the single-process gradient
    loss = sum((o - 0.1).square().mean() for o in outs)
    loss.backward()
    total = loss.detach().clone()
    if world > 1:
        dist.all_reduce(total)
        total /= world
    module = model.module if world > 1 else model
    grads = {n: p.grad.clone() for n, p in module.named_parameters()}
    stats = {n: b.clone() for n, b in module.named_buffers() if 'running' in n}
    torch.save(dict(loss=total, grads=grads, stats=stats), f'{out}_rank{rank}.pt')
    if world > 1:
        dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
