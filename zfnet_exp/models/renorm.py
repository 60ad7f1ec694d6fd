"""The paper's filter renormalization ("feature scale clipping", Sec. 3 / Fig. 6a).

After each update, every convolutional filter whose RMS value exceeds a fixed radius (0.1) is rescaled so that
its RMS equals the radius. Zeiler & Fergus found it crucial for layer 1, where the raw [-128, 128] inputs let a
few filters grow until they dominate. The paper does not say how often it ran; we apply it after every
optimizer step (the cheapest choice that never lets a filter drift past the radius).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def conv_modules(model: nn.Module, layers: Iterable[str] | None = None) -> list[tuple[str, nn.Conv2d]]:
    """Conv modules selected by short name (``conv1``) or dotted name; all of them when ``layers`` is None."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if layers is None:
        return convs
    wanted = set(layers)
    picked = [(n, m) for n, m in convs if n in wanted or n.rsplit(".", 1)[-1] in wanted]
    found = {n for n, _ in picked} | {n.rsplit(".", 1)[-1] for n, _ in picked}
    missing = wanted - found
    if missing:
        names = ", ".join(n.rsplit(".", 1)[-1] for n, _ in convs)
        raise ValueError(f"filter renormalization: no conv layer named {sorted(missing)}; this model has {names}")
    return picked


@torch.no_grad()
def renormalize_filters(model: nn.Module, radius: float = 0.1, layers: Iterable[str] | None = None) -> int:
    """Rescale filters with RMS > ``radius`` to RMS == ``radius`` in place; returns how many were rescaled."""
    clipped = 0
    for _, conv in conv_modules(model, layers):
        w = conv.weight
        rms = w.pow(2).mean(dim=(1, 2, 3)).sqrt()  # one value per output filter
        scale = (radius / rms).clamp(max=1.0)
        clipped += int((scale < 1.0).sum())
        w.mul_(scale.view(-1, 1, 1, 1))
    return clipped
