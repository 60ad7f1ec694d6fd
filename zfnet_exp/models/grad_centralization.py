"""Gradient centralization (Yong et al., ECCV 2020): remove the mean of each conv filter's / FC row's gradient
before the optimizer step.

Why a BatchNorm-free network like ZFNet needs it for a fast start: every conv layer after the first sees
non-negative (post-ReLU) inputs, so the mean component of a filter's gradient moves all its weights together
and shifts the unit's output mean; in the first steps that shift is consistently downward (the loss can only
be lowered by suppressing features that carry no class information yet), and with Adam, which gives every
coordinate a full-size step, the ReLUs of layers 2-5 die within ~10 steps (measured: conv5 output mean
0.16 -> 0.006, the network then sits at chance for hundreds of steps). Centering the gradient removes exactly
that component; the update keeps every direction that changes *which* inputs a filter responds to. The
model is untouched (it is an optimizer-side technique) and it can be switched off (``recipe=paper``).
"""

from __future__ import annotations

import torch
from torch import nn

from .init import first_conv


@torch.no_grad()
def centralize_gradients(model: nn.Module, skip_first_conv: bool = False) -> int:
    """Subtract, in place, the mean over all but the output dimension from the gradient of every conv and
    linear weight (but the first conv's with ``skip_first_conv``); returns the number of tensors changed."""
    changed = 0
    first = first_conv(model) if skip_first_conv else None
    for module in model.modules():
        if module is not first and isinstance(module, (nn.Conv2d, nn.Linear)) and module.weight.grad is not None:
            g = module.weight.grad
            g.sub_(g.mean(dim=tuple(range(1, g.ndim)), keepdim=True))
            changed += 1
    return changed
