"""Paper Fig. 2: the top-k images of chosen feature maps, projected by the deconvnet beside their patches.

One computation (:func:`compute`: pick the maps, project their top-k) and one drawing (:func:`draw`: the
labelled grid and its JSON) for every caller: the ``Top9Deconv`` training callback (top-k mined during
validation), ``analysis=top9`` (mined offline over a checkpoint's images) and the Fig. 6 summary (the bare conv2
panel, :mod:`zfnet_exp.figures.fig6`). :func:`figures` runs both over a model's layers, skipping (once, with
the reason) layers the deconvnet cannot project.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from torch.utils.data import Dataset

from ..diagnostics.deconvnet import DeconvnetNotApplicable
from ..diagnostics.dissect import LayerDissection
from ..diagnostics.geometry import NoReceptiveField
from ..diagnostics.layers import layer_label
from ..diagnostics.projections import topk_projections
from ..diagnostics.topk import TopK, topk_payload
from ..utils.skips import say_skipped
from ..utils.tensors import class_names_of
from ..viz.grids import CELL, top9_cells, top9_figure
from .maps import choose_maps
from .result import FigureResult


@dataclass
class Top9Panels:
    """What Fig. 2 shows for one layer: the chosen ``maps``, their mined ``topk`` and its deconvnet
    ``projections`` and input ``patches`` (``[M, k, 3, h, w]``, raw) with ``filled [M, k]`` (empty slots)."""

    layer: str
    maps: list[int]
    topk: TopK
    projections: Tensor
    patches: Tensor
    filled: Tensor


def compute(
    model: nn.Module,
    dataset: Dataset,
    layer: str,
    topk: TopK,
    maps: int | str | Sequence[int] | None,
    seed: int,
    device,
) -> Top9Panels | None:
    """Choose ``maps`` of ``layer`` (:func:`~zfnet_exp.figures.maps.choose_maps`) and project their top-k
    images of ``dataset`` (the dataset ``topk`` was mined over; its items carry the indices). None when no
    map is chosen (``maps=[]``: mined, nothing drawn). Raises ``DeconvnetNotApplicable``/``NoReceptiveField``
    for a layer the deconvnet cannot project."""
    chosen = choose_maps(model, layer, topk.values.shape[0], maps, seed)
    if not chosen:
        return None
    proj, patches, filled = topk_projections(model, dataset, layer, topk, chosen, device)
    return Top9Panels(layer, chosen, topk, proj, patches, filled)


def draw(
    panels: Top9Panels,
    dataset: Dataset,
    denorm: Callable[[Tensor], Tensor],
    classes: Sequence[str] | None,
    images: str,
    when: str,
    maps_per_row: int = 3,
    cell: int = CELL,
    dissection: LayerDissection | None = None,
    **extra: Any,
) -> FigureResult:
    """The labelled Fig. 2 of one layer (``diag/<layer>/top9``): per map its projections (each
    contrast-normalized on its own) beside the patches, each under its class name (read from ``dataset``);
    titled "<layer>: top-k <images> of M feature maps, <when>". With the layer's ``dissection`` (the same
    epoch's), each map is headed with its concept and IoU ("map 25 · ring · IoU 0.31"). Payload: values, dataset
    indices and positions of the drawn maps (:func:`~zfnet_exp.diagnostics.topk.topk_payload`), the headings
    when dissected, plus ``extra``."""
    layer, maps, t = panels.layer, panels.maps, panels.topk
    P, Q = top9_cells(panels.projections, panels.patches, panels.filled, denorm)
    labels = [class_names_of(dataset, t.indices[c, : t.k].tolist(), classes) for c in maps]
    title = [
        f"{layer}: top-{t.k} {images} of {len(maps)} feature maps, {when}",
        "left: deconvnet projections, each contrast-normalized on its own (grey = 0); "
        "right: the same images' receptive-field patches, with their class",
    ]
    headings = [dissection.heading(c) for c in maps] if dissection is not None else None
    dissected = {"headings": headings} if headings else {}
    return FigureResult(
        key=f"diag/{layer}/top9",
        figure=top9_figure(P, Q, maps, labels, title, maps_per_row=maps_per_row, cell=cell, headings=headings),
        payload={**topk_payload(t, layer, maps), **dissected, **extra},
        caption=f"{layer} top-{t.k}, maps {maps}, {when}",
    )


def figures(
    model: nn.Module,
    dataset: Dataset,
    topk: Mapping[str, TopK],
    layers: Sequence[str],
    *,
    maps: int | str | Sequence[int] | None,
    seed: int,
    device,
    dissection: Mapping[str, LayerDissection] | None = None,
    **drawing: Any,
) -> Iterator[tuple[Top9Panels, FigureResult]]:
    """:func:`compute` then :func:`draw` (with the keyword arguments ``drawing``, and the layer's entry of
    ``dissection``, keyed by canonical layer name, when there is one) for each of ``layers``, one at
    a time (a figure is a few tens of MB before it is written); layers the deconvnet cannot project are skipped
    and named once at the end."""
    skipped = {}
    for layer in layers:
        try:
            panels = compute(model, dataset, layer, topk[layer], maps, seed, device)
        except (DeconvnetNotApplicable, NoReceptiveField) as err:
            skipped[layer] = err
            continue
        if panels is not None:
            found = (dissection or {}).get(layer_label(model, layer))
            yield panels, draw(panels, dataset, dissection=found, **drawing)
    say_skipped("top9 figures", skipped)


__all__ = ["Top9Panels", "compute", "draw", "figures"]
