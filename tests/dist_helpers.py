"""Helpers the multi-process tests load into the runs they start (via custom_imports)."""
import json
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SaveRankParamsHook(Hook):
    """Every rank writes its parameters before and after training, so the test can compare them."""

    def _save(self, runner, name: str) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        torch.save(state, osp.join(runner.work_dir, f'{name}_rank{get_rank()}.pth'))
        # which modules own running statistics, and of what type (BN, or SyncBN under DDP)
        norms = {module_name: type(module).__name__ for module_name, module in model.named_modules()
                 if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)}
        with open(osp.join(runner.work_dir, f'{name}_norms_rank{get_rank()}.json'), 'w') as f:
            json.dump(norms, f)

    def before_train(self, runner) -> None:
        self._save(runner, 'initial')

    def after_run(self, runner) -> None:
        self._save(runner, 'params')
