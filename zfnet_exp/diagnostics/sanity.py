"""Adebayo et al. (NeurIPS 2018) cascading model-parameter randomization, applied to deconvnet projections.

Why: a projection that survives randomizing the weights it supposedly explains is showing the input (and
the forward pass's switches/masks), not what the network learned. Nie et al. (ICML 2018) and Mahendran &
Vedaldi (ECCV 2016) argue that deconvnet views are largely such partial image recovery, so this test
belongs next to every deconvnet figure.

Protocol: the *same* units are projected (the positions chosen on the trained model are kept fixed) while
the parametrized modules on the path to the layer are re-initialized one after another from the top
down, cumulatively; after each step the projection is compared with the original one. Layers above the
target cannot change a projection that stops at the target, so they are not part of the cascade. The
model is deep-copied; the caller's model is never modified.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from ..utils.tensors import argmax_yx
from .deconvnet import project
from .geometry import run_until
from .layers import resolve_layer

Similarity = Callable[[torch.Tensor, torch.Tensor], float]


def _minmax(x: torch.Tensor) -> torch.Tensor:
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM (Wang et al. 2004) of two maps ``[C, H, W]``, each first min-max scaled to [0, 1].

    Gaussian window (11, sigma 1.5; shrunk to the image if smaller), constants ``(0.01)^2`` and
    ``(0.03)^2`` for data range 1, only windows fully inside the image, averaged over channels. Scaling
    each map first makes the score ignore the overall scale, which a randomized network changes freely.

    Why not ``torchmetrics``' SSIM: it reflect-pads the maps and averages the SSIM map over *every* pixel,
    so border windows see mirrored content (Wang et al.'s reference code and scikit-image average only the
    windows fully inside). Measured on random [3, 64, 64] maps: 0.01207 here vs 0.01266 there; on 13x13
    maps -0.095 vs -0.124. The test checks that the two agree exactly on the interior windows.
    """
    a, b = _minmax(a.detach().double()), _minmax(b.detach().double())
    if a.dim() == 2:
        a, b = a[None], b[None]
    window = min(window, a.shape[-1], a.shape[-2])
    window -= 1 - window % 2  # odd
    r = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    kernel = (g[:, None] * g[None, :] / g.sum() ** 2)[None, None]
    c = a.shape[0]
    kernel = kernel.expand(c, 1, window, window)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(t[None], kernel, groups=c)[0]

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two maps (all elements, ties at their average rank):
    ``torchmetrics``' ``spearman_corrcoef``, except that a constant map gives NaN (undefined) where
    torchmetrics warns and returns 0, which would read as "no correlation"."""
    from torchmetrics.functional.regression import spearman_corrcoef

    a, b = a.detach().flatten().double(), b.detach().flatten().double()
    if bool((a == a[0]).all() or (b == b[0]).all()):
        return float("nan")
    return float(spearman_corrcoef(a, b))


_SIMILARITIES: dict[str, Similarity] = {"ssim": ssim, "spearman": spearman}


def _reinit(module: nn.Module) -> None:
    """Fresh random parameters: the module's own default init, or N(0, std of the old values)."""
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()
        return
    with torch.no_grad():
        for p in module.parameters(recurse=False):
            p.normal_(0.0, float(p.std()) if p.numel() > 1 else 1.0)


def _modules_on_path(model: nn.Module, layer: str, probe: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """Leaf modules with parameters that run before ``layer`` is reached, in forward order."""
    _, target = resolve_layer(model, layer)
    names = {id(m): n for n, m in model.named_modules()}
    order: dict[int, nn.Module] = {}

    def seen(mod: nn.Module, _inp) -> None:  # a pre-hook's return value would replace the input
        order.setdefault(id(mod), mod)

    handles = [
        m.register_forward_pre_hook(seen)
        for m in model.modules()
        if next(iter(m.parameters(recurse=False)), None) is not None
    ]
    try:
        with torch.no_grad():
            run_until(model, probe, [target])
    finally:
        for h in handles:
            h.remove()
    return [(names[k], m) for k, m in order.items()]


def _unit_positions(model: nn.Module, images: torch.Tensor, layer: str, channel) -> torch.Tensor:
    _, target = resolve_layer(model, layer)
    with torch.no_grad():
        (out,) = run_until(model, images, [target])
    ch = torch.as_tensor(channel, dtype=torch.long, device=images.device).expand(images.shape[0])
    return argmax_yx(out[torch.arange(images.shape[0], device=images.device), ch])


def cascading_randomization(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    channel: int | torch.Tensor,
    similarity: str | Similarity = "ssim",
    unit: str = "max",
    positions: torch.Tensor | None = None,
    absolute: bool = False,
    seed: int = 0,
    return_projections: bool = False,
    **project_kwargs,
) -> list[tuple[str, float]] | tuple[list[tuple[str, float]], list[torch.Tensor]]:
    """Similarity of deconvnet projections to the original after each cumulative re-initialization step.

    Returns ``[("original", 1.0), (top module name, score), ..., (first module name, score)]``: step 0
    compares the untouched copy with the original (1 for SSIM and Spearman), then each step has
    re-initialized every parametrized module from the top of the path down to and including the named
    one. ``score`` is the mean over images of ``similarity(original_i, randomized_i)`` (``"ssim"``,
    ``"spearman"`` or a callable on two ``[C, H, W]`` maps); ``absolute`` compares absolute values, as
    Adebayo et al. also report. ``unit="max"`` fixes each image's unit on the trained model. Re-initialization
    is seeded by ``seed`` without touching the global RNG. ``return_projections`` adds the projections of
    every step (same order). Extra keyword arguments go to :func:`.deconvnet.project`.

    Projections start from 1.0 at the unit (``from_activation=False``): both similarities ignore scale,
    and a unit that a randomized network no longer activates would otherwise project to an all-zero map
    (similarity undefined, NaN for Spearman). Pass ``from_activation=True`` to compare ZF-scaled maps.
    """
    sim = _SIMILARITIES[similarity] if isinstance(similarity, str) else similarity
    images = images.detach()
    work = copy.deepcopy(model).eval()
    if unit == "max" and positions is None:
        positions = _unit_positions(work, images, layer, channel)

    project_kwargs.setdefault("from_activation", False)

    def run(m: nn.Module) -> torch.Tensor:
        p = project(m, images, layer, channel, unit=unit, positions=positions, **project_kwargs)
        return p.abs() if absolute else p

    reference = run(work)
    steps = [("original", reference)]
    path = _modules_on_path(work, layer, images[:1])
    cuda = sorted({p.device.index or 0 for p in work.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        for name, module in reversed(path):
            _reinit(module)
            steps.append((name, run(work)))
    scores = [(name, sum(sim(reference[i], p[i]) for i in range(len(images))) / len(images)) for name, p in steps]
    if return_projections:
        return scores, [p for _, p in steps]
    return scores


__all__ = ["cascading_randomization", "spearman", "ssim"]
