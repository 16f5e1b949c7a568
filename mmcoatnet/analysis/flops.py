"""The attention products' count, one formula each for the tools that count (get_flops,
benchmark): scaled dot-product attention's products, and mmcv's multi-scale deformable attention's
sampling and weighted sum.

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


# multi-scale deformable attention, per channel of a sampled point: bilinear sampling is a weighted
# sum of 4 neighbours, then the point's attention weight multiplies it into the query's sum
BILINEAR_MACS = 4
ATTENTION_WEIGHT_MACS = 1


def deformable_attention_macs(value_shape: Sequence[int],
                              sampling_locations_shape: Sequence[int]) -> int:
    """MACs of mmcv's multi-scale deformable attention core for a value (batch, keys, heads,
    channels per head) and sampling locations (batch, queries, heads, levels, points, 2): per query,
    head, level and point, bilinear sampling (4 MACs per channel) and the attention-weighted sum
    (1 MAC per channel), over the head's channels. Its linear projections (value, offsets, weights,
    output) are matrix products, counted as such; the sampling weights, computed once per point
    rather than per channel, are not counted, as norms and softmax are not."""
    batch, queries, heads, levels, points, _ = sampling_locations_shape
    channels = value_shape[-1]
    return (batch * queries * heads * levels * points * channels
            * (BILINEAR_MACS + ATTENTION_WEIGHT_MACS))
