"""Figure layouts of the deconvnet diagnostics: the paper's Fig. 2 panel (per feature map, a 3x3 grid of
deconvnet projections beside the 3x3 receptive-field patches of the same images) and the Fig. 4 evolution
strip (maps x epochs). Pure tensor -> tensor code that draws what it is given (the projections come from
:mod:`zfnet_exp.diagnostics.projections`); the callbacks and offline analyses both call :func:`top9_panel`
so the online and offline figures are made the same way.

Display conventions: each projection is contrast-normalized on its own, symmetrically around grey
(0 -> 0.5, the largest |value| -> 0 or 1), because projection magnitudes differ by orders of magnitude
between maps and layers and the sign matters (a shared scale would show only the strongest few).
Patches are shown de-normalized, as the network's input looked.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid

from .images import minmax_each, normalize_each


def tile(cells: torch.Tensor, nrow: int, pad: int = 1, pad_value: float = 1.0) -> torch.Tensor:
    """``[N, 3, h, w]`` -> one image ``[3, H, W]`` with ``nrow`` cells per row, ``pad`` pixels of
    ``pad_value`` around every cell (``torchvision.utils.make_grid``, which also pads a short last row)."""
    if cells.shape[0] == 1:  # make_grid returns a single cell as it is, without the border
        return F.pad(cells[0], (pad,) * 4, value=pad_value)
    return make_grid(cells, nrow=nrow, padding=pad, pad_value=pad_value)


def filter_grid(
    weight: torch.Tensor, nrow: int | None = None, padding: int = 1, scale: int = 1, pad_value: float = 1.0
) -> torch.Tensor:
    """First-layer filters ``[N, 3 (or 1), kh, kw]`` as one RGB image ``[3, H, W]`` in [0, 1] (paper Fig. 6).

    Each filter is contrast-normalized on its own (min -> 0, max -> 1 over its three channels), as in
    the paper's figures: filter norms differ by orders of magnitude, so one shared scale would show only
    the strongest few. A constant filter becomes mid-grey. ``scale`` enlarges each pixel (nearest).
    """
    w = weight.detach().float().cpu()
    if w.dim() != 4 or w.shape[1] not in (1, 3):
        raise ValueError(f"filter_grid shows [N, 3 or 1, kh, kw] filters (a first layer); got {tuple(w.shape)}")
    w = minmax_each(w.expand(-1, 3, -1, -1))
    if scale > 1:
        w = F.interpolate(w, scale_factor=scale, mode="nearest")
    return tile(w, nrow or math.ceil(math.sqrt(w.shape[0])), pad=padding, pad_value=pad_value)


def upscale(cells: torch.Tensor, min_size: int = 32) -> torch.Tensor:
    """Nearest-neighbour enlargement by an integer factor so cells are at least ``min_size`` pixels: conv1's
    receptive field is 7 px at 64 px input, unreadable in a logger's image panel."""
    f = max(1, -(-min_size // max(1, min(cells.shape[-2:]))))
    if f == 1:
        return cells
    lead = cells.shape[:-3]
    out = F.interpolate(cells.reshape(-1, *cells.shape[-3:]), scale_factor=f, mode="nearest")
    return out.reshape(*lead, *out.shape[-3:])


def top9_grid(
    projections: torch.Tensor, patches: torch.Tensor, maps_per_row: int = 4, gap: int = 4, min_cell: int = 32
) -> torch.Tensor:
    """Fig. 2 layout. ``projections``/``patches`` ``[M, k, 3, h, w]`` in [0, 1] (k = 9 -> 3x3 each; empty
    slots may be grey). Per map: projections on the left, patches on the right; maps tiled
    ``maps_per_row`` to a row, separated by ``gap`` white pixels."""
    projections, patches = upscale(projections, min_cell), upscale(patches, min_cell)
    m, k = projections.shape[:2]
    side = math.ceil(math.sqrt(k))
    panels = [
        torch.cat(
            [
                tile(projections[i], side),
                torch.ones(3, tile(projections[i], side).shape[1], 2),
                tile(patches[i], side),
            ],
            2,
        )
        for i in range(m)
    ]
    return tile(torch.stack(panels), min(maps_per_row, m), pad=gap)


def evolution_strip(cells: torch.Tensor, pad: int = 2, min_cell: int = 32) -> torch.Tensor:
    """Fig. 4 layout: ``cells [M, E, 3, h, w]`` (maps x epochs, in [0, 1]) -> rows = maps, columns = epochs."""
    cells = upscale(cells, min_cell)
    e = cells.shape[1]
    return tile(cells.flatten(0, 1), e, pad=pad)


def top9_panel(
    projections: torch.Tensor,
    patches: torch.Tensor,
    filled: torch.Tensor,
    denorm: Callable[[torch.Tensor], torch.Tensor],
    maps_per_row: int = 4,
) -> torch.Tensor:
    """One Fig. 2 panel from :func:`zfnet_exp.diagnostics.projections.topk_projections` output
    (raw projections and normalized-input patches ``[M, k, 3, h, w]``, ``filled [M, k]``): projections
    contrast-normalized each on its own, patches de-normalized by ``denorm``, empty slots grey."""
    m, k = filled.shape
    grey = torch.full((3, *projections.shape[-2:]), 0.5)
    P = torch.where(
        filled[:, :, None, None, None], normalize_each(projections.flatten(0, 1)).view_as(projections), grey
    )
    Q = torch.where(filled[:, :, None, None, None], denorm(patches.flatten(0, 1)).view_as(patches).float(), grey)
    return top9_grid(P, Q, maps_per_row=maps_per_row)


__all__ = ["evolution_strip", "filter_grid", "tile", "top9_grid", "top9_panel", "upscale"]
