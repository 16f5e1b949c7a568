"""What training runs use besides the model: hooks, the optimizer-wrapper constructor, and
synchronised BatchNorm for CPU processes. Importing it registers them in mmengine's root
registries."""
from .hooks import CompiledTrainingHook, RandomStateHook
from .optimizers import CoAtNetLayerDecayOptimizerConstructor
from .sync_bn import CPUDistributedDataParallel, DeviceAgnosticSyncBN

__all__ = ['CompiledTrainingHook', 'RandomStateHook', 'CoAtNetLayerDecayOptimizerConstructor',
           'CPUDistributedDataParallel', 'DeviceAgnosticSyncBN']
