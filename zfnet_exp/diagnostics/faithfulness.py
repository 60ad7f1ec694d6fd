"""Is a heat map right? Deletion / insertion AUC (RISE) and the pointing game (excitation backprop).

Why these two families: deletion/insertion ask the *model* (does removing the pixels the map ranks first
destroy the evidence?), the pointing game asks the *annotation* (does the map's peak land on the object?).
A map can pass one and fail the other; the deconvnet is the classic case (sharp, on the object, but not
class-specific), so both go in one table.

Protocols, as published:

- **Deletion** (Petsiuk, Das & Saenko, RISE, BMVC 2018): replace pixels in decreasing saliency order by a
  zero substrate (0 in normalized space: the dataset mean, grey), record the softmax probability of the
  target after each step; AUC by the trapezoid rule over x in [0, 1]; lower is better.
- **Insertion**: start from a blurred copy (Gaussian, kernel 11, sigma 5) and insert original pixels in the
  same order; higher is better. The kernel is RISE's: ``scipy.ndimage.gaussian_filter`` of a centred
  delta (reflect mode, truncate 4 sigma), applied with ``conv2d`` and zero padding ``k // 2``.
- Steps: RISE moves ``W`` pixels per step on a square image (224 steps at 224 px); ``n_steps`` sets the
  number of steps (default ``H``), the curve has ``n_steps + 1`` points; all steps of all images run as
  batches of ``batch_size`` forward passes.
- **Pointing game** (Zhang et al., ECCV 2016; TorchRay's implementation): the map's maximum (first in
  raster order) is a hit when some ground-truth mask pixel lies at distance < ``tolerance`` (15 px) from
  it, or the point is on the mask (so ``tolerance=0`` means "exactly on the mask", Quantus' variant).
  Accuracy = hits / total; TorchRay's class-averaged accuracy is available too. An image whose mask is
  empty counts as a miss. The centre baseline points at the image centre.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from scipy.stats import binomtest
from torch import Tensor, nn

from ..utils.progress import progress_bar
from ..utils.tensors import argmax_yx, eval_mode

MODES = ("deletion", "insertion")


# ----------------------------------------------------------------------------------------- blur


def rise_kernel(size: int = 11, sigma: float = 5.0, truncate: float = 4.0) -> Tensor:
    """RISE's 2-D blur kernel: scipy's ``gaussian_filter(delta, sigma)`` on a ``size`` x ``size`` grid.

    scipy samples a Gaussian of radius ``int(truncate * sigma + 0.5)``, normalizes it, and correlates in
    ``reflect`` mode, so tails beyond the grid fold back in; the kernel is separable and sums to 1.
    """
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (t / sigma) ** 2)
    w = w / w.sum()
    centre = size // 2
    k1 = torch.zeros(size, dtype=torch.float64)
    period = 2 * size
    for i in range(size):
        for j, weight in zip(range(i - radius, i + radius + 1), w):
            r = j % period  # scipy 'reflect' (half-sample symmetric): d c b a | a b c d | d c b a
            if r >= size:
                r = period - 1 - r
            if r == centre:
                k1[i] += weight
    return torch.outer(k1, k1)


def gaussian_blur(images: Tensor, kernel_size: int = 11, sigma: float = 5.0) -> Tensor:
    """Depthwise blur of [B, C, H, W] with :func:`rise_kernel` and zero padding, as RISE does."""
    c = images.shape[1]
    k = rise_kernel(kernel_size, sigma).to(images)
    weight = k.expand(c, 1, kernel_size, kernel_size).contiguous()
    return F.conv2d(images, weight, padding=kernel_size // 2, groups=c)


# ----------------------------------------------------------------------------------------- deletion / insertion


def saliency_order(saliency: Tensor) -> Tensor:
    """[B, H, W] -> [B, H*W] pixel indices, most salient first (ties: raster order)."""
    return torch.sort(saliency.flatten(1), dim=1, descending=True, stable=True).indices


def trapezoid_auc(curve: Tensor) -> Tensor:
    """Area under curves [B, n + 1] sampled at x = 0, 1/n, ..., 1."""
    n = curve.shape[-1] - 1
    if n < 1:
        raise ValueError("a curve needs at least 2 points")
    return torch.trapezoid(curve, dx=1.0 / n, dim=-1)


def causal_curve(
    model: nn.Module,
    images: Tensor,
    saliency: Tensor,
    target: int | Sequence[int] | Tensor,
    mode: str = "deletion",
    n_steps: int | None = None,
    batch_size: int = 64,
    substrate: Tensor | None = None,
) -> Tensor:
    """Softmax probability of ``target`` after each deletion/insertion step: [B, n_steps + 1].

    ``substrate`` replaces the defaults (deletion: zeros; insertion: :func:`gaussian_blur`), [B,C,H,W].
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; choose one of {MODES}")
    if images.dim() != 4 or saliency.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(
            f"images [B,C,H,W] and saliency [B,H,W] must match; got {tuple(images.shape)} and {tuple(saliency.shape)}"
        )
    b, _, h, w = images.shape
    n_steps = h if n_steps is None else int(n_steps)
    per_step = math.ceil(h * w / n_steps)
    t = torch.as_tensor(target, dtype=torch.long, device=images.device).flatten()
    t = t.expand(b) if t.numel() == 1 else t
    if t.numel() != b:
        raise ValueError(f"target has {t.numel()} entries for a batch of {b}")
    with torch.no_grad():
        if substrate is None:
            substrate = torch.zeros_like(images) if mode == "deletion" else gaussian_blur(images)
        start, finish = (images, substrate) if mode == "deletion" else (substrate, images)
        order = saliency_order(saliency.to(images.device))
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(h * w, device=images.device).expand(b, -1).contiguous())
        counts = (torch.arange(n_steps + 1, device=images.device) * per_step).clamp(max=h * w)
        pairs_img = torch.arange(b, device=images.device).repeat_interleave(n_steps + 1)
        pairs_step = torch.arange(n_steps + 1, device=images.device).repeat(b)
        out = torch.empty(b * (n_steps + 1), dtype=torch.float64)
        with eval_mode(model):
            for s in range(0, len(pairs_img), batch_size):
                pi, ps = pairs_img[s : s + batch_size], pairs_step[s : s + batch_size]
                swapped = (rank[pi] < counts[ps][:, None]).view(-1, 1, h, w)
                x = torch.where(swapped, finish[pi], start[pi])
                logits = model(x).double()
                out[s : s + len(pi)] = logits.softmax(1).gather(1, t[pi][:, None])[:, 0].cpu()
    return out.view(b, n_steps + 1)


def deletion_auc(
    model: nn.Module, images: Tensor, saliency: Tensor, target, n_steps: int | None = None, batch_size: int = 64
) -> tuple[Tensor, Tensor]:
    """(AUC [B], curve [B, n_steps + 1]); lower is better."""
    curve = causal_curve(model, images, saliency, target, "deletion", n_steps, batch_size)
    return trapezoid_auc(curve), curve


def insertion_auc(
    model: nn.Module, images: Tensor, saliency: Tensor, target, n_steps: int | None = None, batch_size: int = 64
) -> tuple[Tensor, Tensor]:
    """(AUC [B], curve [B, n_steps + 1]); higher is better."""
    curve = causal_curve(model, images, saliency, target, "insertion", n_steps, batch_size)
    return trapezoid_auc(curve), curve


# ----------------------------------------------------------------------------------------- pointing game


def max_point(saliency: Tensor) -> Tensor:
    """[B, H, W] -> [B, 2] (y, x) of the first maximum in raster order."""
    return argmax_yx(saliency)


def pointing_game(saliency: Tensor, masks: Tensor, tolerance: float = 15) -> Tensor:
    """Hits [B] (bool): the map's maximum lies on the mask or closer than ``tolerance`` px to it."""
    if saliency.shape != masks.shape:
        raise ValueError(
            f"saliency {tuple(saliency.shape)} and masks {tuple(masks.shape)} must have one shape "
            "(upsample the maps to the image size first)"
        )
    masks = masks.bool()
    b, h, w = masks.shape
    p = max_point(saliency).to(masks.device)
    ys = torch.arange(h, device=masks.device, dtype=torch.float64)
    xs = torch.arange(w, device=masks.device, dtype=torch.float64)
    d2 = (ys[None, :, None] - p[:, 0, None, None]) ** 2 + (xs[None, None, :] - p[:, 1, None, None]) ** 2
    accept = d2 < float(tolerance) ** 2
    on_mask = masks[torch.arange(b), p[:, 0], p[:, 1]]
    return (masks & accept).flatten(1).any(1) | on_mask


def pointing_accuracy(hits: Tensor, labels: Tensor | None = None) -> float:
    """hits / total, or (``labels`` given) TorchRay's mean of per-class accuracies."""
    hits = hits.double()
    if labels is None:
        return float(hits.mean())
    return float(torch.stack([hits[labels == c].mean() for c in labels.unique()]).mean())


def random_baseline(batch: int, height: int, width: int, seed: int = 0) -> Tensor:
    """Seeded uniform noise maps [B, H, W]: a random ranking and a uniformly random pointing location (chance)."""
    return torch.rand(batch, height, width, generator=torch.Generator().manual_seed(seed))


def center_baseline(batch: int, height: int, width: int) -> Tensor:
    """Maps [B, H, W] whose maximum is the centre pixel (H // 2, W // 2): the pointing-game baseline."""
    ys = torch.arange(height, dtype=torch.float32) - height // 2
    xs = torch.arange(width, dtype=torch.float32) - width // 2
    return (-(ys[:, None] ** 2 + xs[None, :] ** 2)).expand(batch, height, width).clone()


BASELINES = {"center": center_baseline, "random": random_baseline}


def baseline_map(name: str, batch: int, height: int, width: int) -> Tensor:
    """The map of a baseline row of :func:`faithfulness_table` (``center`` or ``random``)."""
    return BASELINES[name](batch, height, width)


# ----------------------------------------------------------------------------------------- the table


def wilson_interval(hits: Tensor, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a hit rate (scipy's ``binomtest(...).proportion_ci``): honest at rates near 0 or 1
    and small n, where the normal approximation would leave [0, 1]."""
    n = hits.numel()
    if n == 0:
        return float("nan"), float("nan")
    ci = binomtest(int(hits.sum()), n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


METRICS = ("deletion", "insertion", "pointing")


def faithfulness_table(
    model: nn.Module,
    images: Tensor,
    targets,
    masks: Tensor | None,
    maps: Mapping[str, Tensor],
    n_steps: int | None = None,
    batch_size: int = 64,
    tolerance: float = 15,
    include_center: bool = True,
    include_random: bool = False,
    metrics: Sequence[str] = METRICS,
    progress: bool = False,
) -> list[dict]:
    """One row per method: ``method, n`` and, per requested metric, means over images.

    - ``deletion_auc`` / ``insertion_auc`` (RISE);
    - ``pointing_acc`` with its 95% Wilson interval (``pointing_lo``, ``pointing_hi``), and
      ``pointing_acc_offcentre``: the accuracy on the images where the centre baseline *misses*
      (``n_offcentre`` of them; Zhang et al.'s "difficult set" idea). A map that merely prefers the
      middle of the frame scores 0 there, so this column separates looking at the object from centre bias.

    ``maps[name]`` are [B, H, W] heat maps at image resolution (e.g. from
    :func:`zfnet_exp.diagnostics.attribution.attribute`); ``masks`` [B, H, W] object masks, or None to skip
    the pointing game. ``include_center`` adds the centre-baseline row, ``include_random`` a seeded
    uniform-noise row (chance level for every column).
    """
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown faithfulness metrics {sorted(unknown)}; choose from {METRICS}")
    b, _, h, w = images.shape
    all_maps = dict(maps)
    for name, wanted in (("center", include_center), ("random", include_random)):
        if wanted and name not in all_maps:
            all_maps[name] = baseline_map(name, b, h, w).to(images.device)
    pointing = "pointing" in metrics and masks is not None
    if pointing:
        masks = masks.cpu()
        off_centre = ~pointing_game(center_baseline(b, h, w), masks, tolerance)
    rows = []
    for name, m in progress_bar(all_maps.items(), desc="faithfulness", unit="method", enabled=progress):
        row: dict = {"method": name, "n": b}
        if "deletion" in metrics:
            row["deletion_auc"] = float(deletion_auc(model, images, m, targets, n_steps, batch_size)[0].mean())
        if "insertion" in metrics:
            row["insertion_auc"] = float(insertion_auc(model, images, m, targets, n_steps, batch_size)[0].mean())
        if pointing:
            hits = pointing_game(m.cpu(), masks, tolerance)
            row["pointing_acc"] = pointing_accuracy(hits)
            row["pointing_lo"], row["pointing_hi"] = wilson_interval(hits)
            row["pointing_acc_offcentre"] = pointing_accuracy(hits[off_centre]) if off_centre.any() else float("nan")
            row["n_offcentre"] = int(off_centre.sum())
        rows.append(row)
    return rows


__all__ = [
    "BASELINES",
    "METRICS",
    "baseline_map",
    "causal_curve",
    "center_baseline",
    "deletion_auc",
    "faithfulness_table",
    "gaussian_blur",
    "insertion_auc",
    "max_point",
    "pointing_accuracy",
    "pointing_game",
    "random_baseline",
    "rise_kernel",
    "saliency_order",
    "trapezoid_auc",
    "wilson_interval",
]
