"""Offline Fig. 4: ``python analyze.py ckpt=<last ckpt or run folder> analysis=evolution
[analysis.ckpts=[a.ckpt,b.ckpt,...]]``.

Columns are checkpoints, ordered by their training epoch: ``analysis.ckpts`` if given, else every
``*.ckpt`` in the checkpoint folder of ``ckpt`` (one file per saved epoch; keep them with
``callbacks.model_checkpoint.save_top_k=-1``); ``ckpt`` is always included (it also supplies the data
description). Per layer, a fixed seeded set of maps (the same choice as the evolution callback with the
same seed), each map's strongest activation over a fixed seeded subset of ``analysis.images`` (default
the train split, read with the eval transform), projected with the deconvnet: ``diag/<layer>/evolution``
(PNG: rows = maps, columns = epochs; JSON: which image/unit per cell).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Subset

from ...diagnostics.deconvnet import DeconvnetNotApplicable
from ...diagnostics.geometry import NoReceptiveField
from ...diagnostics.layers import conv_layer_names
from ...diagnostics.projections import topk_projections
from ...diagnostics.topk import mine_topk
from ...utils.options import at_least, maps_option, option_rules
from ...utils.skips import say_skipped
from ...utils.tensors import pick_maps, seeded_subset
from ...viz.grids import evolution_figure
from ...viz.images import normalize_each
from ..analyze import build_dataset, load_checkpoint

if TYPE_CHECKING:
    from ..analyze import AnalysisContext


def _epoch(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False).get("epoch", -1)) + 1


def checkpoints(ref: Path, explicit) -> list[Path]:
    paths = [Path(p) for p in explicit] if explicit else sorted(ref.parent.glob("*.ckpt"))
    paths = list(dict.fromkeys([*paths, ref]))
    by_epoch: dict[int, Path] = {}
    for p in sorted(paths, key=lambda q: (q.name == "last.ckpt", str(q))):
        by_epoch.setdefault(_epoch(p), p)  # last.ckpt duplicates an epoch file: keep the named one
    return [by_epoch[e] for e in sorted(by_epoch)]


@option_rules(maps=maps_option, num_images=at_least(1), step=at_least(0))
def run(
    ctx: AnalysisContext,
    *,
    ckpts: list[str] | None = None,
    layers: list[str] | None = None,
    maps: int | str | list[int] = 6,
    images: str = "train",
    num_images: int = 256,
    seed: int = 0,
    step: int = 0,
) -> dict[str, Any]:
    """Columns = ``ckpts`` (None: every checkpoint beside ``ctx.checkpoint``); per layer (None: every conv
    layer) ``maps`` as in the evolution callback, searched over a seeded subset of ``num_images`` of
    ``images``."""
    if ctx.checkpoint is None:
        raise ValueError("analysis=evolution needs ckpt=<checkpoint or run folder>")
    layers = layers or conv_layer_names(ctx.model)
    ds = build_dataset(ctx.data, images)
    subset = Subset(ds, seeded_subset(len(ds), num_images, seed))
    maps_opt = maps
    ckpts = checkpoints(Path(ctx.checkpoint), ckpts)
    cells: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    records: dict[str, list[dict]] = {layer: [] for layer in layers}
    epochs, skipped = [], {}
    for path in ckpts:
        model, _ = load_checkpoint(path, ctx.device)
        epochs.append(_epoch(path))
        topk = mine_topk(model, subset, layers, k=1, batch_size=ctx.batch_size, device=ctx.device)
        for layer in layers:
            if layer in skipped:
                continue
            t = topk[layer]
            maps = pick_maps(t.values.shape[0], maps_opt, seed, layer)
            idx = [int(t.indices[c, 0]) for c in maps]
            try:
                proj, _, _ = topk_projections(model, ds, layer, t, maps, ctx.device, k=1)
            except (DeconvnetNotApplicable, NoReceptiveField) as err:
                skipped[layer] = err
                continue
            cells[layer].append(normalize_each(proj[:, 0]))
            records[layer].append(
                {
                    "epoch": epochs[-1],
                    "checkpoint": str(path),
                    "maps": maps,
                    "indices": idx,
                    "values": t.values[maps, 0].tolist(),
                    "positions": t.positions[maps, 0].tolist(),
                }
            )
    say_skipped("evolution figures", skipped)
    for layer in [layer for layer in layers if layer not in skipped]:
        ctx.sink.log_image(
            f"diag/{layer}/evolution",
            evolution_figure(
                torch.stack(cells[layer], 1),
                [f"epoch {e}" for e in epochs],
                [f"{layer}\nmap {c}" for c in records[layer][-1]["maps"]],
                f"{layer}: the deconvnet projection of each map's strongest activation on {len(subset)} fixed "
                "images, per checkpoint; each cell contrast-normalized on its own (grey = 0)",
            ),
            step=step,
            caption=f"{layer}: rows = maps, columns = epochs {epochs}",
        )
        ctx.sink.log_json(
            f"diag/{layer}/evolution", {"layer": layer, "epochs": epochs, "records": records[layer]}, step=step
        )
    return {"epochs": epochs, "checkpoints": [str(p) for p in ckpts]}
