"""Network Dissection (Bau et al., CVPR 2017; the NetDissect-Lite procedure): name what each unit detects.

Per unit k of a layer:

1. ``T_k``: the activation level exceeded by the top ``quantile`` (0.005) of the unit's activations over the
   whole dataset and every spatial position of the *native* (un-upsampled) map. It is NumPy's default
   ``percentile`` (linear interpolation between order statistics) at ``1 - quantile``.
2. Per image, the map is upsampled bilinearly (``align_corners=False``) to the concept masks' size and
   thresholded: ``M_k = up(A_k) > T_k``.
3. ``IoU_{k,c} = sum_images |M_k & L_c| / sum_images |M_k | L_c|`` (dataset-level sums, not a mean of
   per-image IoUs).
4. The unit's best concept is the argmax; it is a *detector* of that concept when the IoU exceeds
   ``iou_threshold`` (0.04). ``unique_concepts`` counts distinct concepts among the detectors.

Memory does not grow with the dataset: the items are streamed batch by batch and only per-unit sums are kept.
The threshold needs the whole dataset before any IoU can be counted, so the data are read twice or more. While
the native activations of all items fit in ``cache_bytes`` they are kept from the first pass and ``T_k`` is
exact (a ``kthvalue`` per unit); beyond that budget the first pass keeps each unit's range, a second pass a
``bins``-bin histogram over it, and ``T_k`` interpolates the centres of the bins holding the two order
statistics that NumPy's percentile interpolates. Each statistic is within half a bin of its bin's centre, so
the stated bound ``threshold_error[k] = (max_k - min_k) / bins / 2`` holds for any data; a third pass counts the
IoUs.

Counting is cheap because bilinear interpolation is a convex combination of the 4 nearest native values: an
upsampled map can exceed ``T_k`` only where some native value does, so only the (image, unit) pairs whose native
maximum exceeds ``T_k`` (at most ``quantile`` of all positions) are upsampled at all, and only the pixels above
threshold are counted (``bincount`` of (unit, concept) pairs under them), never a dense unit x pixel x concept
product.

The resolution: concept masks come at whatever size the dataset gives (the callback and ``analysis=dissect``
use half the network input, NetDissect's label resolution: 32 px masks for the default 64 px input); the map
sizes per layer are recorded in ``map_size`` (ZFNet at 64 px: conv1 30x30, conv2 6x6, conv3-5 3x3, so deep
layers' IoUs are coarse; feed larger images for finer deep maps).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..utils.options import at_least, between
from ..utils.tensors import eval_mode
from .layers import capture_activations, layer_label

QUANTILE = 0.005
IOU_THRESHOLD = 0.04
# the rules of the two constants wherever they are options (the dissect callback and analysis)
# the rules of the options the dissect callback and analysis share (declared once, spread into both)
OPTION_RULES = {
    "quantile": between(0.0, 1.0, "the share of top activations, in (0, 1) (NetDissect: 0.005)"),
    "iou_threshold": between(0.0, 1.0, "an IoU in [0, 1] (NetDissect: 0.04)"),
    "num_images": at_least(1),
    "mask_size": at_least(1),
    "top_units": at_least(0),
}
BINS = 2048


@dataclass
class LayerDissection:
    """One layer's dissection. ``iou [units, K]``, ``thresholds``/``threshold_error``/``best_iou [units]``;
    ``label[k]`` the concept unit k detects (None when its best IoU is at most ``iou_threshold``),
    ``best[k]`` its best concept whether or not it is a detector."""

    layer: str
    concepts: list[str]
    categories: list[str]
    thresholds: Tensor
    threshold_error: Tensor
    iou: Tensor
    map_size: tuple[int, int]
    mask_size: tuple[int, int]
    num_images: int
    quantile: float = QUANTILE
    iou_threshold: float = IOU_THRESHOLD
    best_iou: Tensor = field(init=False)
    best: list[str] = field(init=False)
    label: list[str | None] = field(init=False)

    def __post_init__(self) -> None:
        self.best_iou, arg = self.iou.max(1) if self.iou.shape[1] else (torch.zeros(self.iou.shape[0]), None)
        self.best = [self.concepts[int(i)] for i in arg] if arg is not None else [""] * self.iou.shape[0]
        self.label = [b if float(v) > self.iou_threshold else None for b, v in zip(self.best, self.best_iou)]

    @property
    def units(self) -> int:
        return int(self.iou.shape[0])

    @property
    def detectors(self) -> int:
        return sum(lab is not None for lab in self.label)

    @property
    def unique_concepts(self) -> int:
        return len({lab for lab in self.label if lab is not None})

    def category_of(self, concept: str) -> str:
        return self.categories[self.concepts.index(concept)]

    def per_category(self, unique: bool = False) -> dict[str, int]:
        """Detectors (or, with ``unique``, distinct detected concepts) per concept category, every category
        listed (0 when none)."""
        found = [lab for lab in self.label if lab is not None]
        if unique:
            found = sorted(set(found))
        out = dict.fromkeys(dict.fromkeys(self.categories), 0)
        for lab in found:
            out[self.category_of(lab)] += 1
        return out

    def heading(self, unit: int) -> str:
        """The figure heading of a map: "map 25 · ring · IoU 0.31" (or "map 25 · no detector (IoU 0.02)")."""
        lab, v = self.label[unit], float(self.best_iou[unit])
        return f"map {unit} · {lab} · IoU {v:.2f}" if lab else f"map {unit} · no detector (IoU {v:.2f})"

    def rows(self, **extra) -> list[dict]:
        """One row per unit: unit, its best concept, category, IoU, whether it is a detector (+ ``extra``)."""
        return [
            {
                **extra,
                "layer": self.layer,
                "unit": k,
                "concept": self.best[k],
                "category": self.category_of(self.best[k]) if self.best[k] else "",
                "iou": round(float(self.best_iou[k]), 5),
                "detector": self.label[k] is not None,
            }
            for k in range(self.units)
        ]

    def summary(self) -> dict:
        return {
            "layer": self.layer,
            "units": self.units,
            "detectors": self.detectors,
            "unique_concepts": self.unique_concepts,
            "detectors_per_category": self.per_category(),
            "unique_per_category": self.per_category(unique=True),
            "map_size": list(self.map_size),
            "mask_size": list(self.mask_size),
            "num_images": self.num_images,
            "quantile": self.quantile,
            "iou_threshold": self.iou_threshold,
        }

    def payload(self) -> dict:
        """JSON-able: the summary and every unit's threshold, bound, best concept and IoU."""
        return {
            **self.summary(),
            "concepts": self.concepts,
            "categories": self.categories,
            "thresholds": self.thresholds.tolist(),
            "threshold_error": self.threshold_error.tolist(),
            "best": self.best,
            "best_iou": [round(float(v), 5) for v in self.best_iou],
            "label": self.label,
        }


Batches = Callable[[], Iterable[tuple[Mapping[str, Tensor], Tensor]]]


def quantile_rank(n: int, quantile: float) -> float:
    """The 0-based ascending rank (fractional) of NumPy's linear ``percentile`` at ``1 - quantile`` of n values."""
    return (1.0 - quantile) * (n - 1)


def exact_thresholds(values: Tensor, quantile: float) -> Tensor:
    """``[U, n]`` -> ``[U]``: each row's ``percentile(100 * (1 - quantile))`` with linear interpolation (the two
    order statistics it interpolates are among the top ``n - floor(p)`` values: a partial sort suffices)."""
    n = values.shape[1]
    p = quantile_rank(n, quantile)
    lo, hi = math.floor(p), math.ceil(p)
    top = values.topk(n - lo, dim=1, sorted=True).values  # descending: ascending rank r is column n - 1 - r
    v_lo, v_hi = top[:, n - 1 - lo], top[:, n - 1 - hi]
    return v_lo + (p - lo) * (v_hi - v_lo)


class HistogramQuantile:
    """Per-unit histograms over known ranges (``low``/``high [U]``), fed batch by batch; :meth:`thresholds`
    gives the top-``quantile`` level and its error bound (module docstring)."""

    def __init__(self, low: Tensor, high: Tensor, bins: int = BINS):
        self.low, self.high, self.bins = low.double(), high.double(), int(bins)
        self.width = (self.high - self.low) / self.bins
        self.counts = torch.zeros(low.shape[0], self.bins, dtype=torch.float64, device=low.device)
        self.n = 0

    def update(self, acts: Tensor) -> None:
        """``acts [B, U, ...]``."""
        v = acts.transpose(0, 1).flatten(1).double()  # [U, m]
        safe = torch.where(self.width > 0, self.width, torch.ones_like(self.width))
        idx = ((v - self.low[:, None]) / safe[:, None]).floor().clamp(0, self.bins - 1).long()
        idx += torch.arange(v.shape[0], device=v.device)[:, None] * self.bins
        self.counts += torch.bincount(idx.flatten(), minlength=self.counts.numel()).view_as(self.counts).double()
        self.n += v.shape[1]

    def thresholds(self, quantile: float) -> tuple[Tensor, Tensor]:
        p = quantile_rank(self.n, quantile)
        ranks = torch.tensor([math.floor(p), math.ceil(p)], dtype=torch.float64, device=self.counts.device)
        cum = self.counts.cumsum(1)
        b = torch.searchsorted(cum, ranks.expand(cum.shape[0], 2).contiguous(), right=True).clamp(max=self.bins - 1)
        centres = self.low[:, None] + (b + 0.5) * self.width[:, None]  # of the bins holding the two order stats
        frac = p - math.floor(p)
        return ((1 - frac) * centres[:, 0] + frac * centres[:, 1]).float(), (self.width / 2).float()


def dissect_batches(
    batches: Batches,
    layers: Sequence[str],
    concepts: Sequence[str],
    categories: Sequence[str] | None = None,
    quantile: float = QUANTILE,
    iou_threshold: float = IOU_THRESHOLD,
    cache_bytes: int = 1 << 30,
    bins: int = BINS,
) -> dict[str, LayerDissection]:
    """The procedure over ``batches()``: a callable returning a fresh iterable of ``(acts, masks)`` with
    ``acts[layer] [B, U, h, w]`` and ``masks [B, K, H, W]`` bool, the same items in the same order on every
    call (it is called up to three times; once while the activations fit in ``cache_bytes``). ``masks`` may
    instead be integer label maps ``[B, C, H, W]`` (value v >= 1 marks concept v - 1, 0 none; C maps per image,
    e.g. one per Broden category), which keeps a thousand-concept dataset's items small."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile={quantile}: the share of top activations, in (0, 1) (NetDissect: 0.005)")
    concepts = list(concepts)
    categories = list(categories) if categories is not None else ["concept"] * len(concepts)
    if len(categories) != len(concepts):
        raise ValueError(f"{len(categories)} categories for {len(concepts)} concepts")
    # pass 1: counts and the cache while it fits; each unit's range once it does not (for the histogram)
    low: dict[str, Tensor] = {}
    high: dict[str, Tensor] = {}
    cache: list[tuple[dict[str, Tensor], Tensor]] | None = []
    used, n_images, map_size, mask_size = 0, 0, {}, None

    def widen(acts: Mapping[str, Tensor]) -> None:
        for layer in layers:
            a = acts[layer]
            mn, mx = a.amin(dim=(0, 2, 3)), a.amax(dim=(0, 2, 3))
            low[layer] = mn if layer not in low else torch.minimum(low[layer], mn)
            high[layer] = mx if layer not in high else torch.maximum(high[layer], mx)

    for acts, masks in batches():
        for layer in layers:
            if acts[layer].dim() != 4:
                raise ValueError(
                    f"dissect: layer {layer} gives {tuple(acts[layer].shape)} activations, not [batch, units, h, w]: "
                    f"Network Dissection needs spatial maps; choose a conv layer (conv1 .. conv5, last_conv)"
                )
        n_images += masks.shape[0]
        mask_size = tuple(masks.shape[-2:])
        map_size = {layer: tuple(acts[layer].shape[-2:]) for layer in layers}
        if cache is not None:
            used += sum(acts[layer].numel() * 4 for layer in layers) + masks.numel() * masks.element_size()
            if used <= cache_bytes:
                cache.append(({layer: acts[layer].float() for layer in layers}, masks))
                continue
            for cached, _ in cache:  # over budget: the ranges of what was cached, then stream
                widen(cached)
            cache = None
        widen(acts)
    if n_images == 0:
        raise ValueError("dissect: the dataset has no items")
    replay: Batches = (lambda: cache) if cache is not None else batches
    # the thresholds: exact from the cache, else a histogram pass with its bound
    thresholds, errors = {}, {}
    if cache is not None:
        for layer in layers:
            values = torch.cat([a[layer].transpose(0, 1).flatten(1) for a, _ in cache], 1)
            thresholds[layer] = exact_thresholds(values, quantile)
            errors[layer] = torch.zeros_like(thresholds[layer])
            del values
    else:
        hists = {layer: HistogramQuantile(low[layer], high[layer], bins) for layer in layers}
        for acts, _ in batches():
            for layer in layers:
                hists[layer].update(acts[layer])
        for layer in layers:
            thresholds[layer], errors[layer] = hists[layer].thresholds(quantile)
    # the IoU pass: counts over the (unit, pixel) positions above threshold only
    K = len(concepts)
    inter: dict[str, Tensor] = {}
    unit_area: dict[str, Tensor] = {}
    label_area = torch.zeros(K, dtype=torch.float64)
    for acts, masks in replay():
        dense = masks.dtype == torch.bool
        if dense:  # [B, K, H, W] bool -> [B, HW, K]: a position's concepts in one row
            labels = masks.flatten(2).transpose(1, 2)
            label_area += masks.sum((0, 2, 3)).double().cpu()
        else:  # [B, C, H, W] label maps: value v >= 1 is concept v - 1, 0 is none -> [B, HW, C]
            labels = masks.flatten(2).transpose(1, 2).long()
            label_area += torch.bincount(labels.flatten().cpu(), minlength=K + 1)[1 : K + 1].double()
        for layer in layers:
            a = acts[layer]
            U = a.shape[1]
            T = thresholds[layer].to(a.device)
            if layer not in inter:
                inter[layer] = torch.zeros(U * K, dtype=torch.float64)
                unit_area[layer] = torch.zeros(U, dtype=torch.float64)
            # only maps whose native maximum exceeds T can exceed it once upsampled (bilinear = convex weights)
            b_idx, u_idx = (a.flatten(2).amax(2) > T[None]).nonzero(as_tuple=True)
            if b_idx.numel() == 0:
                continue
            up = F.interpolate(a[b_idx, u_idx][:, None].float(), size=mask_size, mode="bilinear", align_corners=False)
            p, pix = (up.flatten(1) > T[u_idx, None]).nonzero(as_tuple=True)  # (map, pixel) above threshold
            units, images = u_idx[p], b_idx[p]
            unit_area[layer] += torch.bincount(units, minlength=U).double().cpu()
            under = labels[images, pix.to(labels.device)]  # [n, K] bool or [n, C] label numbers
            if dense:
                row, k = under.nonzero(as_tuple=True)
                flat = units[row] * K + k.to(units.device)
            else:
                keep = under > 0
                flat = units[:, None].expand_as(under)[keep] * K + (under[keep] - 1).to(units.device)
            inter[layer] += torch.bincount(flat, minlength=U * K).double().cpu()
    out = {}
    for layer in layers:
        i = inter[layer].view(-1, K)
        union = unit_area[layer][:, None] + label_area[None, :] - i
        iou = torch.where(union > 0, i / union.clamp_min(1e-12), torch.zeros_like(i)).float()
        out[layer] = LayerDissection(
            layer=layer,
            concepts=concepts,
            categories=categories,
            thresholds=thresholds[layer].float().cpu(),
            threshold_error=errors[layer].float().cpu(),
            iou=iou,
            map_size=map_size[layer],
            mask_size=mask_size,
            num_images=n_images,
            quantile=quantile,
            iou_threshold=iou_threshold,
        )
    return out


def dissect(
    model: nn.Module,
    dataset: Dataset,
    layers: Sequence[str],
    concepts: Sequence[str],
    quantile: float = QUANTILE,
    iou_threshold: float = IOU_THRESHOLD,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    categories: Sequence[str] | None = None,
    num_workers: int = 0,
    cache_bytes: int = 1 << 30,
    bins: int = BINS,
) -> dict[str, LayerDissection]:
    """Dissect ``layers`` of ``model`` (any name :func:`~zfnet_exp.diagnostics.layers.resolve_layer` accepts;
    results keyed by the canonical name, ``conv5`` for ``features.relu5``) over ``dataset``, whose items are
    ``(image [3, H, W] as the network takes it, masks [K, H', W'] bool or label maps [C, H', W'] int, ...)`` for
    the K ``concepts``
    (``categories``: one per concept, for the per-category counts). See the module docstring."""
    device = torch.device(device)
    names = {layer_label(model, layer): layer for layer in layers}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)

    def batches():
        with eval_mode(model), torch.no_grad(), capture_activations(model, list(names.values())) as acts:
            for item in loader:
                model(item[0].to(device))
                masks = item[1].to(device)
                yield {short: acts[layer] for short, layer in names.items()}, masks

    return dissect_batches(batches, list(names), concepts, categories, quantile, iou_threshold, cache_bytes, bins)


__all__ = [
    "BINS",
    "IOU_THRESHOLD",
    "QUANTILE",
    "HistogramQuantile",
    "LayerDissection",
    "dissect",
    "dissect_batches",
    "exact_thresholds",
]
