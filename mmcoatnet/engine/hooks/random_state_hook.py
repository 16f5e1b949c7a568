"""Exact resumption: the random number generators' states travel with the checkpoint."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Saves the Python, numpy and torch (CPU and CUDA) RNG states in each checkpoint and restores
    them on resume, so that a killed run continues as the uninterrupted one would have (the RoI
    samplers of detectors draw from torch's global generator). Saved as tensors and plain values,
    which safe (weights-only) loading accepts."""

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        py_version, py_state, py_gauss = random.getstate()
        np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
        checkpoint['random_state'] = dict(
            python=dict(version=py_version, state=list(py_state), gauss=py_gauss),
            numpy=dict(kind=np_kind, keys=torch.from_numpy(np_keys.astype(np.int64)),
                       pos=int(np_pos),
                       has_gauss=int(np_has_gauss), gauss=float(np_gauss)),
            torch=torch.get_rng_state(),
            cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('random_state')
        if state is None:
            return
        py = state['python']
        random.setstate((py['version'], tuple(py['state']), py['gauss']))
        np_state = state['numpy']
        np.random.set_state((np_state['kind'], np_state['keys'].numpy().astype(np.uint32),
                             np_state['pos'], np_state['has_gauss'], np_state['gauss']))
        torch.set_rng_state(state['torch'])
        if torch.cuda.is_available() and len(state['cuda']) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state['cuda'])
