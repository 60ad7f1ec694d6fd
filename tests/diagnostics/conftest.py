"""The tiny models of the diagnostics tests: paper architectures (same kernels, strides, pools, LRN) with few
channels, so that a diagnostic runs in milliseconds while exercising the real layer geometry."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn


def _tiny(
    name: str = "zfnet",
    size: int = 64,
    classes: int = 6,
    widths: dict[int, int] | int = 16,
    fc_units: int = 32,
    seed: int | None = 0,
    init: str | None = "kaiming",
) -> nn.Module:
    """A paper architecture (same kernels, strides, pools, LRN) with few channels, in eval mode, seeded."""
    if seed is not None:
        torch.manual_seed(seed)
    widths = widths if isinstance(widths, dict) else dict.fromkeys(range(1, 6), widths)
    kw = {"init": init} if init else {}
    from zfnet_exp.models import create_model

    return create_model(name, num_classes=classes, input_size=size, conv_widths=widths, fc_units=fc_units, **kw).eval()


@pytest.fixture(scope="session")
def tiny_model() -> Callable[..., nn.Module]:
    """The builder itself: ``tiny_model("alexnet", size=80, classes=10, widths={...})``."""
    return _tiny


@pytest.fixture(scope="module")
def zf() -> nn.Module:
    """ZFNet at 64 px, 6 classes, conv widths 16/24/24/24/16, fc 32 (the attribution tests' model)."""
    return _tiny(widths={1: 16, 2: 24, 3: 24, 4: 24, 5: 16})
