"""Which kernel runs an attention call: :func:`select_kernel`, a pure function of a frozen
:class:`KernelContext`. The torch state the choice depends on (autograd, tracing for export,
torch.compile) is read once per call, by :func:`read_torch_state`, where the context is made."""
import contextlib
import numbers
from dataclasses import dataclass
from typing import Iterator, Literal, Optional, get_args

import torch
from torch.torch_version import TorchVersion

from ...torch_compat import (
    FLEX_ATTENTION,
    FLEX_ATTENTION_TRAINING,
    TORCH_VERSION,
    is_compiling,
    is_exporting,
)
from ..rel_pos import Size

# dense: SDPA with the whole (heads, N, N) bias; chunked: query map rows within the bias budget,
# one autograd Function with its own backward (CPU training); chunked-sdpa: the same chunks, each
# through SDPA (inference; GPU training, recomputed in backward); flex: FlexAttention reading the
# table inside the kernel; traced: torch.jit.trace (TorchScript's ONNX exporter); exported:
# torch.export (torch.onnx's dynamo exporter)
Kernel = Literal['dense', 'chunked', 'chunked-sdpa', 'flex', 'traced', 'exported']
KERNELS = get_args(Kernel)
# auto: each device's default (select_kernel); flex: FlexAttention wherever it runs; sdpa: never
# FlexAttention, SDPA whole or in chunks by the budget
AttentionImpl = Literal['auto', 'flex', 'sdpa']
ATTENTION_IMPLS = get_args(AttentionImpl)
DEFAULT_MAX_BIAS_BYTES = 64 << 20  # above glibc's mmap threshold: chunks go back to the system
# a GPU's budget: 8 chunks, not 50, for CoAtNet-0's S3 at 800x1344, batch 2; a whole bias that
# fits and is kept for backward holds at most 256 MiB / batch per layer
DEFAULT_GPU_MAX_BIAS_BYTES = 256 << 20


def default_max_bias_bytes(device_type: str) -> int:
    """The bias budget of an attention built without one (``attention_max_bias_bytes=None``):
    a CUDA GPU's, else the CPU's, which every other device kept before GPUs had their own."""
    return DEFAULT_GPU_MAX_BIAS_BYTES if device_type == 'cuda' else DEFAULT_MAX_BIAS_BYTES


def checked_max_bias_bytes(value) -> Optional[int]:
    """``attention_max_bias_bytes`` as given, None (each device's default) or a whole number of
    bytes, at least 1; anything else raises, naming the option."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f'attention_max_bias_bytes is None (the device\'s default) or a whole '
                        f'number of bytes such as 1 << 30, got {value!r}')
    if value < 1:
        raise ValueError(f'attention_max_bias_bytes is a number of bytes, at least 1, got '
                         f'{value}')
    return int(value)


def flex_head_dim_supported(head_dim: int) -> bool:
    """Whether FlexAttention takes heads of this size: a power of two, at least 16."""
    return head_dim >= 16 and head_dim & (head_dim - 1) == 0


def flex_runs(device_type: str, grad: bool, torch_version: str) -> bool:
    """Whether FlexAttention can run a call: not with autograd on a CPU (no CPU backward); on a
    GPU from torch 2.5, and with autograd from 2.6 (the bias table's gradient)."""
    if device_type == 'cpu':
        return not grad
    return TorchVersion(torch_version) >= (FLEX_ATTENTION_TRAINING if grad else FLEX_ATTENTION)


@dataclass(frozen=True)
class TorchState:
    """What torch is doing around an attention call, read once (:func:`read_torch_state`)."""
    grad: bool                      # autograd records this call
    tracing: Optional[Literal['jit', 'export']] = None  # sizes are graph values, not ints
    compiling: bool = False         # inside a torch.compile graph
    device_type: Optional[str] = None  # choose for this device type; None: the input's
    torch_version: str = TORCH_VERSION  # what FlexAttention can do depends on it


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
                      device_type=_chosen_for, torch_version=TORCH_VERSION)


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
    max_bias_bytes: Optional[int] = None  # None: the device's (default_max_bias_bytes)
    impl: AttentionImpl = 'auto'
    head_dim: int = 32              # CoAtNet's head size
    torch_version: str = TORCH_VERSION

    @property
    def bias_budget(self) -> int:
        """The budget the choice and the chunks go by: the attention's, or its device's."""
        if self.max_bias_bytes is None:
            return default_max_bias_bytes(self.device_type)
        return self.max_bias_bytes

    @property
    def bias_bytes(self) -> int:
        """One layer's float32 bias and scores for the whole map: batch x heads x N x N."""
        tokens = self.feat_size[0] * self.feat_size[1]
        return max(self.batch, 1) * self.num_heads * tokens * tokens * 4


def select_kernel(ctx: KernelContext) -> Kernel:
    """The kernel for ``ctx`` (docs/architecture.md#attention-kernels):

    1. ``traced`` / ``exported`` while the model is traced for export, whatever the size;
    2. ``dense`` for a masked input (padded windows): only it takes a mask;
    3. ``flex`` where FlexAttention runs the call (:func:`flex_runs`: not with autograd on a
       CPU) with ``impl='flex'``, and by default on CUDA for the head sizes it takes: no N x N
       bias at all, training included;
    4. past the bias budget (:attr:`KernelContext.bias_budget`) for the whole bias and scores:
       ``chunked`` with autograd on a CPU (SDPA would take its slow math fallback for a bias that
       needs a gradient), else ``chunked-sdpa``;
    5. ``dense`` otherwise.
    """
    if ctx.tracing == 'jit':
        return 'traced'
    if ctx.tracing == 'export':
        return 'exported'
    if ctx.masked:
        return 'dense'
    flex_wanted = ctx.impl == 'flex' or (ctx.impl == 'auto' and ctx.device_type == 'cuda'
                                         and flex_head_dim_supported(ctx.head_dim))
    if flex_wanted and flex_runs(ctx.device_type, ctx.grad, ctx.torch_version):
        return 'flex'
    if ctx.bias_bytes > ctx.bias_budget:
        return 'chunked' if ctx.grad and ctx.device_type == 'cpu' else 'chunked-sdpa'
    return 'dense'
