"""The attention kernels, one file per family, and the pure choice between them (select.py)."""
from .chunked import chunked_attention, chunked_sdpa_attention, rows_per_chunk
from .dense import dense_attention
from .exported import graph_attention
from .flex import flex_relative_attention, flex_token_bucket
from .select import (
    ATTENTION_IMPLS,
    DEFAULT_MAX_BIAS_BYTES,
    KERNELS,
    AttentionImpl,
    Kernel,
    KernelContext,
    TorchState,
    kernels_chosen_for,
    read_torch_state,
    select_kernel,
)

__all__ = ['ATTENTION_IMPLS', 'DEFAULT_MAX_BIAS_BYTES', 'KERNELS', 'AttentionImpl', 'Kernel',
           'KernelContext', 'TorchState', 'chunked_attention', 'chunked_sdpa_attention',
           'dense_attention',
           'flex_relative_attention', 'flex_token_bucket', 'graph_attention',
           'kernels_chosen_for', 'read_torch_state', 'rows_per_chunk', 'select_kernel']
