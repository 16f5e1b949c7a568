"""Run with torchrun (N processes) or plainly (1 process): the CoAtNet backbone with SyncBN under
DDP, one deterministic loss on a fixed global batch, split across the processes. Writes the loss
and the gradients (averaged by DDP) to OUT_rank<r>.pt.

    python -m torch.distributed.run --nproc_per_node 2 tests/dist_syncbn_check.py OUT
    python tests/dist_syncbn_check.py OUT
"""
import sys

from mmcoatnet.analysis.ddp_check import ddp_step

if __name__ == '__main__':
    ddp_step(sys.argv[1], 'cpu')  # the step itself is make gpu-check's too (NCCL there)
