"""Figure layouts of the deconvnet diagnostics: the paper's Fig. 2 panel (per feature map, a 3x3 grid of
deconvnet projections beside the 3x3 receptive-field patches of the same images) and the Fig. 4 evolution
strip (maps x epochs). Pure tensor -> tensor code; the callbacks and offline analyses both call
:func:`top9_panel` so the online and offline figures are made the same way.

Display conventions: each projection is contrast-normalized on its own, symmetrically around grey
(0 -> 0.5, the largest |value| -> 0 or 1), because projection magnitudes differ by orders of magnitude
between maps and layers and the sign matters (a shared scale would show only the strongest few).
Patches are shown de-normalized, as the network's input looked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..diagnostics.autograd import input_gradients_only
from ..diagnostics.deconvnet import project
from ..diagnostics.geometry import layer_geometry, receptive_field_patches
from ..diagnostics.topk import TopK


def normalize_each(x: torch.Tensor) -> torch.Tensor:
    """Per-image symmetric contrast normalization ``[N, C, H, W]`` -> [0, 1] (0 stays mid-grey)."""
    x = x.detach().float()
    scale = x.flatten(1).abs().amax(1).clamp_min(1e-12)[:, None, None, None]
    return (0.5 + 0.5 * x / scale).clamp(0, 1)


def _tile(cells: torch.Tensor, nrow: int, pad: int = 1, pad_value: float = 1.0) -> torch.Tensor:
    """``[N, 3, h, w]`` -> one image ``[3, H, W]`` with ``nrow`` cells per row."""
    n, c, h, w = cells.shape
    rows = math.ceil(n / nrow)
    out = torch.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), pad_value)
    for i in range(n):
        r, q = divmod(i, nrow)
        out[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = cells[i]
    return out


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
                _tile(projections[i], side),
                torch.ones(3, _tile(projections[i], side).shape[1], 2),
                _tile(patches[i], side),
            ],
            2,
        )
        for i in range(m)
    ]
    return _tile(torch.stack(panels), min(maps_per_row, m), pad=gap)


def evolution_strip(cells: torch.Tensor, pad: int = 2, min_cell: int = 32) -> torch.Tensor:
    """Fig. 4 layout: ``cells [M, E, 3, h, w]`` (maps x epochs, in [0, 1]) -> rows = maps, columns = epochs."""
    cells = upscale(cells, min_cell)
    e = cells.shape[1]
    return _tile(cells.flatten(0, 1), e, pad=pad)


def project_units(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    channels: torch.Tensor,
    positions: torch.Tensor,
    denorm: Callable[[torch.Tensor], torch.Tensor],
    chunk: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deconvnet projections and input patches of units ``(channels[i], positions[i])`` of ``images[i]``,
    both cut to the unit's receptive field: (projections normalized for display, patches de-normalized),
    each ``[N, 3, Rh, Rw]`` on the CPU. Works under ``inference_mode`` (tensors are cloned, autograd is
    re-enabled locally); the model's train/eval mode is restored by :func:`project`."""
    with input_gradients_only(model):
        images = images.clone()
        geom = layer_geometry(model, layer, tuple(images.shape[-2:]), images.shape[1])
        projs = []
        for s in range(0, images.shape[0], chunk):
            projs.append(
                project(
                    model,
                    images[s : s + chunk],
                    layer,
                    channels[s : s + chunk].clone(),
                    positions=positions[s : s + chunk].clone(),
                ).detach()
            )
        proj = torch.cat(projs) if projs else images[:0]
        proj_rf = receptive_field_patches(model, proj, layer, positions, geometry=geom)
        patch_rf = receptive_field_patches(model, images, layer, positions, geometry=geom)
    return normalize_each(proj_rf).cpu(), denorm(patch_rf.detach()).cpu()


def top9_panel(
    model: nn.Module,
    dataset: Dataset,
    layer: str,
    topk: TopK,
    maps: Sequence[int],
    denorm: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device | str = "cpu",
    maps_per_row: int = 4,
) -> tuple[torch.Tensor, dict]:
    """One Fig. 2 panel for ``maps`` of ``layer`` from a mined :class:`TopK` (indices into ``dataset``,
    whose items are ``(image, label, index)``): the grid image ``[3, H, W]`` and a JSON-ready payload of
    the values, dataset indices and positions of those maps. Empty top-k slots are drawn grey."""
    k = topk.k
    imgs, chans, poss, slots = [], [], [], []
    for mi, c in enumerate(maps):
        for j in range(k):
            idx = int(topk.indices[c, j])
            if idx < 0:
                continue
            imgs.append(dataset[idx][0])
            chans.append(c)
            poss.append(topk.positions[c, j])
            slots.append((mi, j))
    if imgs:
        proj, patch = project_units(
            model,
            torch.stack(imgs).to(device),
            layer,
            torch.tensor(chans, dtype=torch.long, device=device),
            torch.stack(poss).to(device),
            denorm,
        )
        h, w = proj.shape[-2:]
    else:
        probe = dataset[0][0]
        with input_gradients_only(model):  # tracing records tensor versions: not possible on inference tensors
            h, w = layer_geometry(model, layer, tuple(probe.shape[-2:]), probe.shape[0]).rf_size
    P = torch.full((len(maps), k, 3, h, w), 0.5)
    Q = torch.full((len(maps), k, 3, h, w), 0.5)
    for n, (mi, j) in enumerate(slots):
        P[mi, j], Q[mi, j] = proj[n], patch[n]
    payload = {
        "layer": layer,
        "k": k,
        "maps": [int(c) for c in maps],
        "values": [[v if math.isfinite(v) else None for v in row] for row in topk.values[list(maps)].tolist()],
        "indices": topk.indices[list(maps)].tolist(),
        "positions": topk.positions[list(maps)].tolist(),
    }
    return top9_grid(P, Q, maps_per_row=maps_per_row), payload


__all__ = ["evolution_strip", "normalize_each", "project_units", "top9_grid", "top9_panel"]
