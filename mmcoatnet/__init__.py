"""CoAtNet backbone for OpenMMLab detection and segmentation.

Importing this package registers ``CoAtNet`` in mmengine's root ``MODELS`` registry, which both
mmdet and mmseg registries fall back to, and makes mmengine read local checkpoints safely (weights
only, with the few types mmengine itself saves allowed).
"""
from .hooks import RandomStateHook  # noqa: F401  (registers the hook)
from .models import CoAtNet  # noqa: F401  (registers the backbone)
from .safe_load import use_safe_local_loader

use_safe_local_loader()

__version__ = '0.1.0'
