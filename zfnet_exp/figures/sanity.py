"""The cascading-randomization check of a Fig. 2 panel (Adebayo et al. 2018), ``analysis=top9 sanity=true``.

For each drawn map with a top-1 image: the deconvnet projection of that image's unit again after the weights
are re-initialized cumulatively from the top layer down, with its similarity to the original projection. A
deconvnet that still draws the same picture with random weights shows the image, not the network.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..diagnostics.sanity import cascading_randomization
from ..utils.tensors import unwrap_subset
from ..viz.grids import evolution_figure
from ..viz.images import normalize_each
from .fig2 import Top9Panels
from .result import FigureResult


def sanity_figure(
    model: nn.Module,
    dataset: Dataset,
    panels: Top9Panels,
    denorm: Callable[[Tensor], Tensor],
    similarity: str,
    seed: int,
    device,
) -> FigureResult | None:
    """``diag/<layer>/sanity`` of ``panels`` (None when no drawn map has an image): rows = maps, columns =
    the image, then the projection per randomization step (each contrast-normalized on its own); payload:
    the per-step similarity (``ssim`` or ``spearman``; step "original" scores 1)."""
    layer, t = panels.layer, panels.topk
    keep = [c for c in panels.maps if int(t.indices[c, 0]) >= 0]
    if not keep:
        return None
    base = unwrap_subset(dataset)
    images = torch.stack([base[int(t.indices[c, 0])][0] for c in keep]).to(device)
    with torch.enable_grad():
        scores, projs = cascading_randomization(
            model,
            images,
            layer,
            torch.tensor(keep, device=device),
            similarity=similarity,
            positions=t.positions[keep, 0].to(device),
            seed=seed,
            return_projections=True,
        )
    cells = torch.stack([normalize_each(p.cpu()) for p in projs], 1)  # [M, steps, 3, H, W]
    cells = torch.cat([denorm(images.cpu())[:, None], cells], 1)  # first column: the image
    steps = [name for name, _ in scores]
    return FigureResult(
        key=f"diag/{layer}/sanity",
        figure=evolution_figure(
            cells,
            ["image", *steps],
            [f"{layer}\nmap {c}" for c in keep],
            f"{layer}: cascading randomization (columns: weights re-initialized from the top down)",
        ),
        payload={
            "layer": layer,
            "maps": keep,
            "similarity": similarity,
            "steps": [{"step": n, "score": s} for n, s in scores],
        },
        caption="image | " + " | ".join(steps),
    )


__all__ = ["sanity_figure"]
