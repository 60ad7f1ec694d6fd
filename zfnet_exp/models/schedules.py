"""Learning-rate schedules that are not in torch: linear warm-up then cosine decay, stepped per optimizer step.

A BN-free 8-layer network such as ZFNet sits at chance for hundreds of steps under a constant large learning
rate; a short warm-up lets Adam's moment estimates settle before the full rate is applied.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(
    optimizer: Optimizer, total_steps: int, warmup_frac: float = 0.05, final_lr_frac: float = 0.01
) -> LambdaLR:
    total_steps = max(1, int(total_steps))
    warmup = max(1, int(round(warmup_frac * total_steps)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return final_lr_frac + (1 - final_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
