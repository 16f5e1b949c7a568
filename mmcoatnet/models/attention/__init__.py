"""CoAtNet's relative attention (layer.py) and the providers of its bias (bias.py); the kernels it
runs are in ``models/kernels``."""
from .bias import (
    CachedBiasProvider,
    RelativePositionBias,
    RelativePositionMlp,
    build_bias_provider,
)
from .layer import RelativeAttention, WindowedAttention, build_attention

__all__ = ['CachedBiasProvider', 'RelativeAttention', 'RelativePositionBias',
           'RelativePositionMlp', 'WindowedAttention', 'build_attention', 'build_bias_provider']
