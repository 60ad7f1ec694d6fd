"""Deconvnet projections of chosen units, cut to their receptive fields: the numbers behind the paper's
Fig. 2 (top-9), Fig. 4 (evolution) and Fig. 7(c) (occlusion) panels.

Why a module of its own: the figures (``zfnet_exp.viz``) only draw tensors they are given, and the
callbacks and offline analyses must compute the same panels the same way; so the "which unit of which
image, projected how, cut where" step lives here once. Works from inside Lightning's validation loop
(``inference_mode``): inputs are cloned and autograd is re-enabled locally with the parameters frozen
(:func:`~zfnet_exp.diagnostics.autograd.input_gradients_only`), so under DDP no gradient reaches the
reducer. Outputs are raw (projections in signal units, patches in the network's normalized input space);
normalizing for display is the figure's job.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..utils.tensors import unwrap_subset
from .autograd import input_gradients_only
from .deconvnet import project
from .geometry import layer_geometry, receptive_field_patches
from .topk import TopK


def project_units(
    model: nn.Module, images: Tensor, layer: str, channels: Tensor, positions: Tensor, chunk: int = 64
) -> tuple[Tensor, Tensor]:
    """Deconvnet projections and input patches of units ``(channels[i], positions[i])`` of ``images[i]``,
    both cut to the unit's receptive field: ``(projections, patches)``, each ``[N, 3, Rh, Rw]``, detached,
    on the CPU. ``chunk`` rows go through one backward pass (bounded memory)."""
    with input_gradients_only(model):
        images = images.clone()
        geom = layer_geometry(model, layer, tuple(images.shape[-2:]), images.shape[1])
        projs = [
            project(
                model,
                images[s : s + chunk],
                layer,
                channels[s : s + chunk].clone(),
                positions=positions[s : s + chunk].clone(),
            ).detach()
            for s in range(0, images.shape[0], chunk)
        ]
        proj = torch.cat(projs) if projs else images[:0]
        proj_rf = receptive_field_patches(model, proj, layer, positions, geometry=geom)
        patch_rf = receptive_field_patches(model, images, layer, positions, geometry=geom)
    return proj_rf.detach().cpu(), patch_rf.detach().cpu()


def topk_projections(
    model: nn.Module,
    dataset: Dataset,
    layer: str,
    topk: TopK,
    maps: Sequence[int],
    device: torch.device | str = "cpu",
    k: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The first ``k`` (default all) entries of ``topk`` for channels ``maps``, projected: ``(projections
    [M, k, 3, Rh, Rw], patches [M, k, 3, Rh, Rw], filled [M, k] bool)``. ``topk.indices`` are indices of the
    dataset under any ``Subset`` wrappers of ``dataset`` (items are ``(image, label, index)``); empty slots
    (index -1: fewer images than k) are zeros with ``filled`` False."""
    k = topk.k if k is None else min(int(k), topk.k)
    base = unwrap_subset(dataset)
    imgs, chans, poss, slots = [], [], [], []
    for mi, c in enumerate(maps):
        for j in range(k):
            idx = int(topk.indices[c, j])
            if idx < 0:
                continue
            imgs.append(base[idx][0])
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
        )
        h, w = proj.shape[-2:]
    else:
        probe = base[0][0]
        with input_gradients_only(model):  # tracing records tensor versions: not possible on inference tensors
            h, w = layer_geometry(model, layer, tuple(probe.shape[-2:]), probe.shape[0]).rf_size
    P = torch.zeros(len(maps), k, 3, h, w)
    Q = torch.zeros(len(maps), k, 3, h, w)
    filled = torch.zeros(len(maps), k, dtype=torch.bool)
    for n, (mi, j) in enumerate(slots):
        P[mi, j], Q[mi, j], filled[mi, j] = proj[n], patch[n], True
    return P, Q, filled


def strongest_unit_projection(model: nn.Module, image: Tensor, layer: str, channel: int) -> Tensor:
    """``[3, H, W]`` (CPU, float): ZF deconvnet projection of the strongest unit of ``channel`` of ``layer``
    in ``image`` ([3, H, W] or [1, 3, H, W]), uncut: the occlusion figure's panel (c)."""
    x = image[None] if image.dim() == 3 else image
    param = next(model.parameters())
    with input_gradients_only(model):
        proj = project(model, x.to(param.device, param.dtype).clone(), layer, channel, unit="max")[0]
    return proj.detach().float().cpu()


__all__ = ["project_units", "strongest_unit_projection", "topk_projections"]
