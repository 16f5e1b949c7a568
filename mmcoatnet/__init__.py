"""CoAtNet backbone for OpenMMLab detection, segmentation and pretraining.

Importing this package registers ``CoAtNet`` in mmengine's root ``MODELS`` registry, which mmdet's,
mmseg's and mmpretrain's registries fall back to, registers the checkpoint adapter as the backbone's
``Pretrained`` initializer, the hooks and the optimizer-wrapper constructor the configs name, and
makes mmengine read checkpoints safely (weights only, with the few types mmengine itself saves
allowed): see :func:`install_safe_checkpoint_loading`.

First it checks the environment's OpenMMLab libraries: OpenMMLab's own or OneDL's fork of them,
one family, in the tested ranges (:func:`mmcoatnet.mm_compat.check_stack` names what is wrong).
"""
from .mm_compat import check_stack, fix_config_scopes

check_stack()  # before anything imports mmengine or mmcv from a mixed environment

from .checkpoint import CoAtNetPretrainedInit  # noqa: E402, F401  (registers the adapter)
from .engine import CoAtNetLayerDecayOptimizerConstructor, CompiledTrainingHook, RandomStateHook  # noqa: E402, F401
from .models import CoAtNet  # noqa: E402, F401  (registers the backbone)
from .safe_load import install_safe_checkpoint_loading, uninstall_safe_checkpoint_loading  # noqa: E402, F401
from .version import __version__  # noqa: E402, F401

install_safe_checkpoint_loading()
fix_config_scopes()
