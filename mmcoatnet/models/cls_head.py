"""CoAtNet as an mmpretrain image classifier: the classification head, in the paper's form and in
timm's layout. Imported by mmpretrain configs (``custom_imports``), since it needs mmpretrain."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.heads import LinearClsHead
from mmpretrain.registry import MODELS

FINAL_NORMS = (None, 'LN', 'BN')


@MODELS.register_module()
class CoAtNetClsHead(LinearClsHead):
    """Global average pooling of the last stage, then a linear classifier (``fc``): the paper's
    head. ``final_norm='LN'`` or ``'BN'`` first normalises the map over channels at every position
    (``norm``), as timm's CoAtNets do before pooling, so converted timm checkpoints keep their
    classifier (``tools/model_converters/timm2mmcoatnet.py --keep-head``).

    Args:
        num_classes: classes of the linear classifier.
        in_channels: channels of the backbone's last returned stage.
        final_norm: None (the paper's head), 'LN' (LayerNorm) or 'BN' (BatchNorm).
        norm_eps: the final norm's epsilon (timm: the transformer stages' norm epsilon).
        **kwargs: ``LinearClsHead``'s (loss, topk, cal_acc, init_cfg).
    """

    def __init__(self, num_classes: int, in_channels: int, final_norm: Optional[str] = None,
                 norm_eps: float = 1e-6, **kwargs):
        super().__init__(num_classes, in_channels, **kwargs)
        if final_norm not in FINAL_NORMS:
            raise ValueError(f'final_norm is one of {FINAL_NORMS}, got {final_norm!r}')
        self.final_norm = final_norm
        if final_norm == 'LN':
            self.norm = nn.LayerNorm(in_channels, eps=norm_eps)
        elif final_norm == 'BN':
            self.norm = nn.BatchNorm2d(in_channels, eps=norm_eps)

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]  # (B, C, H, W)
        if self.final_norm == 'LN':
            return self.norm(x.permute(0, 2, 3, 1)).mean((1, 2))
        if self.final_norm == 'BN':
            x = self.norm(x)
        return x.mean((2, 3))
