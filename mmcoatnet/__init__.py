"""CoAtNet backbone for OpenMMLab detection and segmentation.

Importing this package registers ``CoAtNet`` in mmengine's root ``MODELS`` registry, which both
mmdet and mmseg registries fall back to.
"""
from .models import CoAtNet  # noqa: F401  (registers the backbone)

__version__ = '0.1.0'
