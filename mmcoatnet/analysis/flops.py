"""The attention products' count, one formula for the tools that count (get_flops, benchmark).

It is in MACs, one per multiply-add, as the papers count. The counters the tools run have units of
their own: torch's FlopCounterMode counts FLOPs (2 per MAC), mmengine's FlopAnalyzer counts MACs;
each tool converts with :data:`FLOPS_PER_MAC` where it hands the count to its counter or reports it.
Standard library only."""
import math
from typing import Sequence

FLOPS_PER_MAC = 2


def attention_products_macs(query_shape: Sequence[int], key_shape: Sequence[int],
                            value_shape: Sequence[int]) -> int:
    """MACs of q·kᵀ and attention·v for a query (..., L, E), key (..., S, E) and value (..., S, Ev):
    L·S·E and L·S·Ev for each of the query's leading (batch, head) indices."""
    *batch, queries, dim = query_shape
    keys, value_dim = key_shape[-2], value_shape[-1]
    return math.prod(batch) * queries * keys * (dim + value_dim)
