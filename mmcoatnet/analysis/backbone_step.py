"""The training step that the backbone tools measure (benchmark, profile): one definition, so
their figures are of the same step."""
from typing import Sequence

import torch
import torch.nn as nn


def backbone_train_step(model: nn.Module, image: torch.Tensor) -> Sequence[torch.Tensor]:
    """Forward, backward of the mean of every output map (summed in float32), gradients dropped;
    returns the outputs."""
    outs = model(image)
    sum(out.float().mean() for out in outs).backward()
    model.zero_grad(set_to_none=True)
    return outs
