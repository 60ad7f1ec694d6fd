"""Paper Fig. 4: how fixed feature maps develop over training, one column per epoch.

One computation (:func:`compute`: a column, i.e. each chosen map's strongest activation over a fixed image
subset, projected by the deconvnet) and one drawing (:func:`draw`: the labelled strip of the columns so far and
its JSON) for both callers: the ``FeatureEvolution`` training callback (a column at scheduled epochs) and
``analysis=evolution`` (a column per saved checkpoint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from ..diagnostics.deconvnet import DeconvnetNotApplicable
from ..diagnostics.dissect import LayerDissection
from ..diagnostics.geometry import NoReceptiveField
from ..diagnostics.projections import topk_projections
from ..diagnostics.topk import mine_topk
from ..viz.grids import CELL, evolution_figure
from ..viz.images import normalize_each
from .maps import choose_maps
from .result import FigureResult


@dataclass
class Column:
    """One epoch's column: per layer the display cells ``[M, 3, h, w]`` (each contrast-normalized on its own)
    and the record of what they show (maps, dataset indices, values, positions); the layers the deconvnet
    cannot project in ``skipped`` (layer -> reason)."""

    cells: dict[str, Tensor] = field(default_factory=dict)
    records: dict[str, dict] = field(default_factory=dict)
    skipped: dict[str, Exception] = field(default_factory=dict)


def compute(
    model: nn.Module,
    dataset: Dataset,
    subset: Sequence[int],
    layers: Sequence[str],
    maps: int | str | Sequence[int] | None,
    seed: int,
    batch_size: int,
    device,
    **record: Any,
) -> Column:
    """The column of ``model`` for ``layers``: the seeded ``maps`` of each layer
    (:func:`~zfnet_exp.figures.maps.choose_maps`), each map's strongest activation over the items ``subset``
    of ``dataset`` (the same images at every epoch), projected with the deconvnet; ``record`` (e.g. the epoch)
    goes into each layer's record."""
    topk = mine_topk(model, Subset(dataset, list(subset)), layers, k=1, batch_size=batch_size, device=device)
    column = Column()
    for layer in layers:
        t = topk[layer]
        chosen = choose_maps(model, layer, t.values.shape[0], maps, seed)
        try:
            proj, _, _ = topk_projections(model, dataset, layer, t, chosen, device, k=1)
        except (DeconvnetNotApplicable, NoReceptiveField) as err:
            column.skipped[layer] = err
            continue
        column.cells[layer] = normalize_each(proj[:, 0])
        column.records[layer] = {
            **record,
            "maps": chosen,
            "indices": [int(t.indices[c, 0]) for c in chosen],
            "values": t.values[chosen, 0].tolist(),
            "positions": t.positions[chosen, 0].tolist(),
        }
    return column


def draw(
    layer: str,
    cells: Sequence[Tensor],
    records: Sequence[dict],
    images: str,
    cell: int = CELL,
    dissection: LayerDissection | None = None,
) -> FigureResult:
    """Fig. 4 of one layer (``diag/<layer>/evolution``) from its columns so far (``cells``/``records`` of
    :func:`compute`, oldest first, each record with its ``epoch``): rows = maps labelled "<layer> / map <i>",
    columns = "epoch <n>"; ``images`` says which images were searched. With the layer's ``dissection`` of the
    latest epoch, rows are headed with its concept and IoU ("map 25 · ring · IoU 0.31"). Payload: the epochs and
    the records (and the headings when dissected)."""
    epochs = [r["epoch"] for r in records]
    maps = records[-1]["maps"]
    heads = [dissection.heading(c) for c in maps] if dissection is not None else [f"map {c}" for c in maps]
    dissected = {"headings": heads} if dissection is not None else {}
    return FigureResult(
        key=f"diag/{layer}/evolution",
        figure=evolution_figure(
            torch.stack(list(cells), 1),
            [f"epoch {e}" for e in epochs],
            [f"{layer}\n{h}" for h in heads],
            f"{layer}: {len(maps)} feature maps over training. Each cell: the deconvnet projection of the map's "
            f"strongest activation on {images}, contrast-normalized on its own (grey = 0)",
            cell=cell,
        ),
        payload={"layer": layer, "epochs": epochs, "records": list(records), **dissected},
        caption=f"{layer} maps {maps}; columns = epochs {epochs}",
    )


__all__ = ["Column", "compute", "draw"]
