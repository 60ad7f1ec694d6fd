"""Derived metrics: numbers a comparison computes from a run's files when the run did not log them, through one
hook, so that a figure-specific number (Fig. 6's "aliasing at the stride's Nyquist") is a metric like any other.

A derived metric is a function ``Run -> float | None`` registered under a name with :func:`derived_metric`; the
comparison computes it for the finished runs when ``--metrics`` names it (it may read a checkpoint, so it is never
computed unasked). Another module registers its own with the same decorator and is loaded with ``--plugin
<module>`` (``python -m zfnet_exp.experiments.compare <sweep> --plugin my_metrics --metrics my/metric``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..runs import Run

DERIVED: dict[str, Callable[[Run], float | None]] = {}


def derived_metric(name: str) -> Callable:
    """Register ``fn(run) -> float | None`` as the derived metric ``name`` (None: not defined for that run)."""

    def register(fn: Callable[[Run], float | None]) -> Callable[[Run], float | None]:
        DERIVED[name] = fn
        return fn

    return register


def first_conv(run: Run) -> torch.nn.Conv2d | None:
    """The first convolution of the run's network at its last checkpoint (None without a checkpoint)."""
    if run.last is None:
        return None
    model = run.checkpoint(prefer="last").model()
    return next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)


@derived_metric("derived/conv1/aliasing_at_stride")
def conv1_aliasing_at_stride(run: Run) -> float | None:
    """Paper Fig. 6: the share of conv1's spectral energy above the Nyquist frequency of its own stride
    (:func:`~zfnet_exp.diagnostics.filters.aliasing_index` with ``cutoff = 1/stride``), i.e. what aliases when the
    layer's output is subsampled; for stride 2 it is the logged ``health/conv1/aliasing`` itself."""
    from ..diagnostics.filters import aliasing_index

    conv = first_conv(run)
    if conv is None:
        return None
    stride = int(conv.stride[0]) if isinstance(conv.stride, tuple) else int(conv.stride)
    return float(aliasing_index(conv.weight.detach().float(), cutoff=1.0 / stride))
