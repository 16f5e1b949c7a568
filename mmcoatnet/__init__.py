"""CoAtNet backbone for OpenMMLab detection, segmentation and pretraining.

Importing this package registers ``CoAtNet`` in mmengine's root ``MODELS`` registry, which mmdet's,
mmseg's and mmpretrain's registries fall back to, registers the checkpoint adapter as the backbone's
``Pretrained`` initializer, the hooks and the optimizer-wrapper constructor the configs name, and
makes mmengine read checkpoints safely (weights only, with the few types mmengine itself saves
allowed): see :func:`install_safe_checkpoint_loading`.
"""
from .checkpoint import CoAtNetPretrainedInit  # noqa: F401  (registers the adapter)
from .engine import CoAtNetLayerDecayOptimizerConstructor, CompiledTrainingHook, RandomStateHook  # noqa: F401
from .models import CoAtNet  # noqa: F401  (registers the backbone)
from .safe_load import install_safe_checkpoint_loading, uninstall_safe_checkpoint_loading  # noqa: F401
from .version import __version__  # noqa: F401

install_safe_checkpoint_loading()
