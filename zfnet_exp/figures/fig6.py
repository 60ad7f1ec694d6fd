"""Paper Fig. 6: the first-layer filters, and the 7x7/s2 against 11x11/s4 comparison.

During training (``FilterHealth`` callback): :func:`filter_figure`, the conv1 grid titled with the epoch's
health numbers (aliasing index, dead filters framed red, low-RMS count). After a sweep of both first layers
(``experiments/fig6.py``): :func:`variant_panels` computes one variant's conv1 grid and its conv2 Fig. 2 panel
(the maps chosen and projected by :func:`zfnet_exp.figures.fig2.compute`, as in the top9 callback), and
:func:`comparison` draws the variants side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn
from torch.utils.data import Dataset

from ..diagnostics.filters import dead_channels
from ..diagnostics.topk import mine_topk
from ..models.init import first_conv
from ..viz import fig6 as fig6_viz
from ..viz.grids import CELL, filter_grid, top9_panel
from ..viz.grids import filter_figure as filter_canvas
from . import fig2
from .result import FigureResult


def filter_figure(
    model: nn.Module, layers: list[str], metrics: Mapping[str, float], acts: Mapping[str, Tensor], epoch: int, cell=CELL
) -> FigureResult | None:
    """``diag/filters/conv1``: the first convolution's filters (None unless it sees RGB or grey input), each
    enlarged to about ``cell`` px, under a title with this epoch's numbers from ``metrics`` (the
    ``filter_health`` keys of the first of ``layers`` with an aliasing index) and the dead filters (never
    active: per-channel maxima ``acts``) framed red; payload: those numbers and the dead filters' indices."""
    first = first_conv(model)
    if first is None or first.weight.shape[1] not in (1, 3):
        return None
    name = next((layer for layer in layers if f"health/{layer}/aliasing" in metrics), "conv1")
    n = first.weight.shape[0]
    facts, payload = [], {"layer": name, "epoch": epoch, "filters": n}
    if f"health/{name}/aliasing" in metrics:
        payload["aliasing"] = float(metrics[f"health/{name}/aliasing"])
        facts.append(f"aliasing {payload['aliasing']:.3f} (smooth ~0, white noise ~0.80)")
    dead = dead_channels(acts[name]) if name in acts else None
    if dead is not None:
        payload["dead"] = dead
        facts.append(f"dead {len(dead)}/{n} (never active on val" + (", framed red)" if dead else ")"))
    if f"health/{name}/low_rms_frac" in metrics:
        payload["low_rms"] = round(metrics[f"health/{name}/low_rms_frac"] * n)
        facts.append(f"low-RMS {payload['low_rms']}/{n}")
    headline = f"{name} filters ({n} x {first.weight.shape[2]}x{first.weight.shape[3]}), epoch {epoch}"
    return FigureResult(
        key="diag/filters/conv1",
        figure=filter_canvas(first.weight, [headline, "; ".join(facts)], marked=dead or (), cell=cell),
        payload=payload,
        caption=f"{headline}: " + "; ".join(facts),
    )


def variant_panels(
    model: nn.Module,
    dataset: Dataset,
    denorm: Callable[[Tensor], Tensor],
    maps: int,
    device,
    batch_size: int = 64,
) -> tuple[Tensor, Tensor | None]:
    """One variant's column: its first-layer filter grid and its conv2 top-9 panel over ``dataset`` (its
    validation split), ``maps`` maps chosen with seed 0 as the top9 callback chooses them; both ``[3, H, W]``
    in [0, 1]."""
    grid = filter_grid(first_conv(model).weight, scale=4)
    topk = mine_topk(model, dataset, ["conv2"], k=9, batch_size=batch_size, device=device)["conv2"]
    panels = fig2.compute(model, dataset, "conv2", topk, maps, 0, device)
    if panels is None:  # no map asked for: the column shows "no panel"
        return grid, None
    return grid, top9_panel(panels.projections, panels.patches, panels.filled, denorm, maps_per_row=2)


def comparison(
    filters: Mapping[str, Tensor],
    top9: Mapping[str, Tensor | None],
    captions: Mapping[str, str],
    title: str,
    **payload: Any,
) -> FigureResult:
    """Fig. 6 of several first-layer variants (:func:`zfnet_exp.viz.fig6.fig6_figure`: a column each, conv1
    grid above conv2 panel, captioned); payload: the captions and ``payload`` (e.g. which run each column is)."""
    return FigureResult(
        key="fig6",
        figure=fig6_viz.fig6_figure(filters, top9, captions, title=title),
        payload={"title": title, "captions": dict(captions), **payload},
        caption=title,
    )


__all__ = ["comparison", "filter_figure", "variant_panels"]
