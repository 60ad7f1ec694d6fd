"""Autograd for input-space diagnostics run from inside training (deconvnet projections, gradients)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def input_gradients_only(model: nn.Module) -> Iterator[None]:
    """Autograd back on, also inside Lightning's validation loop (which runs under ``inference_mode``), with
    the model's parameters temporarily frozen: the diagnostics need gradients w.r.t. the input only, and
    under DDP a backward that reaches parameters fires the reducer's gradient all-reduce on the one rank that
    draws figures (a collective mismatch that hangs or kills the job)."""
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.inference_mode(False), torch.enable_grad():
        for p in params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in params:
                p.requires_grad_(True)
