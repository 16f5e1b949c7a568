"""Which kernel runs an attention call: :func:`select_kernel`, a pure function of a frozen
:class:`KernelContext`. The torch state the choice depends on (autograd, tracing for export,
torch.compile) is read once per call, by :func:`read_torch_state`, where the context is made."""
import contextlib
from dataclasses import dataclass
from typing import Iterator, Literal, Optional, get_args

import torch

from ...torch_compat import is_compiling, is_exporting
from ..rel_pos import Size

# dense: SDPA with the whole (heads, N, N) bias; chunked: query map rows within the bias budget,
# one autograd Function with its own backward (CPU training); chunked-sdpa: the same chunks, each
# through SDPA (inference; GPU training, recomputed in backward); flex: FlexAttention reading the
# table inside the kernel; traced: torch.jit.trace (TorchScript's ONNX exporter); exported:
# torch.export (torch.onnx's dynamo exporter)
Kernel = Literal['dense', 'chunked', 'chunked-sdpa', 'flex', 'traced', 'exported']
KERNELS = get_args(Kernel)
AttentionImpl = Literal['auto', 'flex']
ATTENTION_IMPLS = get_args(AttentionImpl)
DEFAULT_MAX_BIAS_BYTES = 64 << 20  # above glibc's mmap threshold: chunks go back to the system


@dataclass(frozen=True)
class TorchState:
    """What torch is doing around an attention call, read once (:func:`read_torch_state`)."""
    grad: bool                      # autograd records this call
    tracing: Optional[Literal['jit', 'export']] = None  # sizes are graph values, not ints
    compiling: bool = False         # inside a torch.compile graph
    device_type: Optional[str] = None  # choose for this device type; None: the input's


_chosen_for: Optional[str] = None  # set by kernels_chosen_for alone


@contextlib.contextmanager
def kernels_chosen_for(device_type: str) -> Iterator[None]:
    """Kernels chosen for ``device_type`` whatever device the tensors are on: the memory
    simulation runs a GPU's choices on a CPU, and so can a test of a GPU branch."""
    global _chosen_for
    previous, _chosen_for = _chosen_for, device_type
    try:
        yield
    finally:
        _chosen_for = previous


def read_torch_state() -> TorchState:
    """The one place the attention reads torch's global state."""
    tracing = None
    if torch.jit.is_tracing():  # TorchScript's ONNX exporter traces so
        tracing = 'jit'
    elif is_exporting() or torch.onnx.is_in_onnx_export():  # the dynamo exporter: torch.export
        tracing = 'export'
    return TorchState(grad=torch.is_grad_enabled(), tracing=tracing, compiling=is_compiling(),
                      device_type=_chosen_for)


@dataclass(frozen=True)
class KernelContext:
    """Everything :func:`select_kernel` decides by."""
    device_type: str
    grad: bool
    tracing: Optional[str]
    masked: bool                    # a key padding mask comes with the input (padded windows)
    batch: int
    feat_size: Size
    num_heads: int
    max_bias_bytes: int = DEFAULT_MAX_BIAS_BYTES
    impl: AttentionImpl = 'auto'

    @property
    def bias_bytes(self) -> int:
        """One layer's float32 bias and scores for the whole map: batch x heads x N x N."""
        tokens = self.feat_size[0] * self.feat_size[1]
        return max(self.batch, 1) * self.num_heads * tokens * tokens * 4


def select_kernel(ctx: KernelContext) -> Kernel:
    """The kernel for ``ctx`` (docs/architecture.md#attention-kernels):

    1. ``traced`` / ``exported`` while the model is traced for export, whatever the size;
    2. ``dense`` for a masked input (padded windows): only it takes a mask;
    3. ``flex`` with ``impl='flex'``, except with autograd on a CPU (FlexAttention has no CPU
       backward);
    4. past ``max_bias_bytes`` for the whole bias and scores: ``chunked`` with autograd on a CPU
       (SDPA would take its slow math fallback for a bias that needs a gradient), else
       ``chunked-sdpa``;
    5. ``dense`` otherwise.
    """
    if ctx.tracing == 'jit':
        return 'traced'
    if ctx.tracing == 'export':
        return 'exported'
    if ctx.masked:
        return 'dense'
    if ctx.impl == 'flex' and (ctx.device_type != 'cpu' or not ctx.grad):
        return 'flex'
    if ctx.bias_bytes > ctx.max_bias_bytes:
        return 'chunked' if ctx.grad and ctx.device_type == 'cpu' else 'chunked-sdpa'
    return 'dense'
