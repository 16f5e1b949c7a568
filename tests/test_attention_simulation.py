"""The attention's part of the memory simulation (mmcoatnet/analysis/attention_simulation.py):
CUDA's default, FlexAttention, simulated by a stand-in that holds what fused FlexAttention holds
(no N x N tensor), and the kernels a simulated step ran, recorded."""
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from mmcoatnet.models.attention import RelativeAttention, RelativePositionBias
from mmcoatnet.torch_compat import FLEX_ATTENTION_TRAINING, MEMORY_SIMULATION

from helpers import needs_torch

HEADS, SIDE, BATCH = 4, 48, 2
ONE_BIAS_BYTES = HEADS * (SIDE * SIDE) ** 2 * 4  # one (heads, N, N) float32 bias: 81 MiB


def simulated_training_step(impl: str):
    """The peak bytes and the kernels of one attention layer's forward and backward, simulated for
    CUDA as train_memory.py --simulate cuda simulates a step."""
    from torch.distributed._tools.mem_tracker import MemTracker

    from mmcoatnet.analysis.attention_simulation import attention_kernels_recorded
    from mmcoatnet.analysis.simulation import memory_breakdown, simulation_patches
    with simulation_patches('cuda'), attention_kernels_recorded() as kernels, \
            FakeTensorMode(allow_non_fake_inputs=True):
        attn = RelativeAttention(64, 64, HEADS * 32, 32, RelativePositionBias(HEADS, (8, 8)),
                                 impl=impl).train()
        x = torch.randn(BATCH, SIDE, SIDE, 64, requires_grad=True)
        tracker = MemTracker()
        tracker.track_external(attn)
        with tracker:
            out = attn(x)
            assert out.shape == (BATCH, SIDE, SIDE, 64)
            out.sum().backward()
            table_grad = attn.rel_pos.table.grad
            assert table_grad is not None and table_grad.shape == attn.rel_pos.table.shape
        peak = memory_breakdown(tracker.get_tracker_snapshot('peak')[torch.device('cpu')])
    return peak['total'], dict(kernels)


@needs_torch(FLEX_ATTENTION_TRAINING, "FlexAttention's training on CUDA")
@needs_torch(MEMORY_SIMULATION, 'the training-memory simulation')
def test_cuda_default_is_simulated_as_flex_attention_without_an_n_by_n_tensor():
    flex_peak, flex_kernels = simulated_training_step('auto')
    sdpa_peak, sdpa_kernels = simulated_training_step('sdpa')
    assert flex_kernels == {'flex': 1} and sdpa_kernels == {'dense': 1}
    assert flex_peak < ONE_BIAS_BYTES / 3  # linear in the tokens: q, k, v, outputs, gradients
    assert sdpa_peak > 2 * ONE_BIAS_BYTES  # the bias, and its gradient for the batch
