"""The attention kernels, one file per family, and the pure choice between them (select.py)."""
from .chunked import chunked_attention, chunked_sdpa_attention, rows_per_chunk
from .dense import dense_attention
from .exported import graph_attention
from .flex import flex_relative_attention, flex_token_bucket
from .select import (
    ATTENTION_IMPLS,
    DEFAULT_GPU_MAX_BIAS_BYTES,
    DEFAULT_MAX_BIAS_BYTES,
    KERNELS,
    AttentionImpl,
    Kernel,
    KernelContext,
    TorchState,
    checked_max_bias_bytes,
    default_max_bias_bytes,
    flex_head_dim_supported,
    flex_runs,
    kernels_chosen_for,
    read_torch_state,
    select_kernel,
)

__all__ = ['ATTENTION_IMPLS', 'DEFAULT_GPU_MAX_BIAS_BYTES', 'DEFAULT_MAX_BIAS_BYTES', 'KERNELS',
           'AttentionImpl', 'Kernel', 'KernelContext', 'TorchState', 'checked_max_bias_bytes',
           'chunked_attention', 'chunked_sdpa_attention', 'default_max_bias_bytes',
           'dense_attention', 'flex_head_dim_supported', 'flex_relative_attention', 'flex_runs',
           'flex_token_bucket', 'graph_attention', 'kernels_chosen_for', 'read_torch_state',
           'rows_per_chunk', 'select_kernel']
