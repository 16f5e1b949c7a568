from .compiled_training_hook import CompiledTrainingHook, prepare_compiled_training
from .random_state_hook import RandomStateHook

__all__ = ['CompiledTrainingHook', 'RandomStateHook', 'prepare_compiled_training']
