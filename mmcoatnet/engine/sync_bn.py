"""Synchronised BatchNorm for processes without GPUs, and the DDP wrapper that uses it.

torch's SyncBatchNorm refuses CPU modules (and mmcv's is a CUDA op), so multi-process runs on CPUs
(gloo; CI, laptops) would otherwise train with per-process statistics. ``DeviceAgnosticSyncBN``
all-reduces the per-channel sums with an autograd-aware all_reduce, which gives the same statistics
and gradients as one process with the whole batch. On GPUs mmengine's own conversion to torch's
SyncBatchNorm is used instead.
"""
import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS
from torch.distributed.nn.functional import all_reduce


class DeviceAgnosticSyncBN(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the batch of every process in the default group."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f'expected at least 2-D input, got {input.dim()}-D')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        channels = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        count = torch.full((1,), x.numel() // channels, dtype=x.dtype, device=x.device)
        totals = all_reduce(torch.cat([x.sum(dims), x.square().sum(dims), count]))
        n = totals[-1]
        mean = totals[:channels] / n
        var = (totals[channels:2 * channels] / n - mean.square()).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else \
                    1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                unbiased = var.detach() * n / (n - 1).clamp_min(1)
                self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        shape = [1, channels] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_to_device_agnostic_sync_bn(module: nn.Module, convert_plain_bn: bool) -> nn.Module:
    """Swap torch's SyncBatchNorm (always) and plain BatchNorm (if asked) for DeviceAgnosticSyncBN,
    keeping parameters, buffers and train/eval state."""
    is_sync = isinstance(module, nn.SyncBatchNorm)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
            module, DeviceAgnosticSyncBN) and (is_sync or convert_plain_bn):
        converted = DeviceAgnosticSyncBN(module.num_features, module.eps, module.momentum,
                                         module.affine, module.track_running_stats)
        converted.load_state_dict(module.state_dict())
        converted.train(module.training)
        if module.affine:
            converted.weight.requires_grad_(module.weight.requires_grad)
            converted.bias.requires_grad_(module.bias.requires_grad)
        return converted
    for name, child in module.named_children():
        module.add_module(name, convert_to_device_agnostic_sync_bn(child, convert_plain_bn))
    return module


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper for CPU processes: BatchNorm synchronised with DeviceAgnosticSyncBN
    (``sync_bn=True`` converts plain BN too, as mmengine's ``sync_bn`` does on GPUs)."""

    def __init__(self, module: nn.Module, sync_bn: bool = False, **kwargs):
        module = convert_to_device_agnostic_sync_bn(module, convert_plain_bn=sync_bn)
        super().__init__(module=module, **kwargs)
