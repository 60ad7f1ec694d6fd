"""Network Dissection figures: what each unit of a layer detects (Bau et al. 2017, their Fig. 4 / 5 style).

One computation (:func:`compute`: :func:`~zfnet_exp.diagnostics.dissect.dissect` over a concept dataset) and
one drawing (:func:`draw`: per layer, detectors per concept as bars coloured by category beside the
best-scoring units with their labels) for both callers: the ``Dissect`` training callback (every epoch, from
activations the validation pass already computed) and ``analysis=dissect`` (offline, on shapes, VOC or Broden
concepts). :func:`unit_rows` is the table of every unit (epoch, layer, unit, concept, category, IoU).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from ..diagnostics.dissect import LayerDissection, dissect
from ..viz.images import figure_to_pil
from .result import FigureResult

# one colour per concept category (NetDissect's categories and ours)
CATEGORY_COLOURS = {
    "object": "#1f77b4",
    "part": "#ff7f0e",
    "edge": "#2ca02c",
    "texture": "#d62728",
    "colour": "#9467bd",
    "clutter": "#8c564b",
    "scene": "#e377c2",
    "material": "#7f7f7f",
}


def compute(
    model: nn.Module, dataset: Dataset, layers: Sequence[str], concepts: Sequence[str], **options: Any
) -> dict[str, LayerDissection]:
    """:func:`~zfnet_exp.diagnostics.dissect.dissect` (``options``: its keyword arguments)."""
    return dissect(model, dataset, layers, concepts, **options)


def draw(result: LayerDissection, when: str, images: str, top_units: int = 12, **extra: Any) -> FigureResult:
    """``diag/<layer>/dissect``: left, how many units detect each concept (bars coloured by category); right,
    the ``top_units`` best units with their concept and IoU. Title: detector and unique-concept counts, the
    procedure's constants, the map and mask sizes, ``images`` and ``when``. Payload: the per-unit result
    (:meth:`LayerDissection.payload`) plus ``extra``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    r = result
    counts = Counter(lab for lab in r.label if lab is not None)
    order = sorted(counts, key=lambda c: (-counts[c], c))
    fig = Figure(figsize=(10, max(3.2, 0.22 * max(len(order), top_units) + 1.4)), dpi=100)
    ax, tx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    if order:
        ys = list(range(len(order)))[::-1]
        colours = [CATEGORY_COLOURS.get(r.category_of(c), "#333333") for c in order]
        ax.barh(ys, [counts[c] for c in order], color=colours)
        ax.set_yticks(ys, [f"{c} ({r.category_of(c)})" for c in order], fontsize=7)
        ax.set_xlabel("detector units")
    else:
        ax.text(0.5, 0.5, "no detectors", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_title("units per detected concept", fontsize=9)
    best = sorted(range(r.units), key=lambda k: -float(r.best_iou[k]))[:top_units]
    tx.axis("off")
    tx.set_title(f"top {len(best)} units by IoU", fontsize=9)
    for row, k in enumerate(best):
        colour = CATEGORY_COLOURS.get(r.category_of(r.best[k]), "#333333") if r.label[k] else "#999999"
        tx.text(
            0.0,
            1 - (row + 0.5) / max(top_units, 1),
            r.heading(k),
            fontsize=8,
            color=colour,
            transform=tx.transAxes,
            va="center",
        )
    per_cat = ", ".join(f"{c} {n}" for c, n in r.per_category().items() if n)
    fig.suptitle(
        f"{r.layer}: {r.detectors} of {r.units} units are detectors, {r.unique_concepts} unique concepts "
        f"({per_cat or 'none'}), {when}\nIoU > {r.iou_threshold} at the top {100 * r.quantile:g}% level; "
        f"{r.map_size[0]}x{r.map_size[1]} maps upsampled to {r.mask_size[0]}x{r.mask_size[1]} masks; {images}",
        fontsize=8,
    )
    fig.tight_layout()
    return FigureResult(
        key=f"diag/{r.layer}/dissect",
        figure=figure_to_pil(fig),
        payload={**r.payload(), **extra},
        caption=f"{r.layer}: {r.detectors} detectors, {r.unique_concepts} unique concepts, {when}",
    )


def unit_rows(results: Mapping[str, LayerDissection], **extra: Any) -> list[dict]:
    """Every unit of every layer as a row (``extra`` first, e.g. the epoch): layer, unit, concept, category,
    IoU, detector."""
    return [row for r in results.values() for row in r.rows(**extra)]


def scalars(results: Mapping[str, LayerDissection], prefix: str = "dissect") -> dict[str, float]:
    """``dissect/<layer>/detectors``, ``.../unique_concepts`` and ``.../<category>`` (detectors per category)."""
    out: dict[str, float] = {}
    for layer, r in results.items():
        out[f"{prefix}/{layer}/detectors"] = float(r.detectors)
        out[f"{prefix}/{layer}/unique_concepts"] = float(r.unique_concepts)
        for cat, n in r.per_category().items():
            out[f"{prefix}/{layer}/{cat}"] = float(n)
    return out


__all__ = ["CATEGORY_COLOURS", "compute", "draw", "scalars", "unit_rows"]
