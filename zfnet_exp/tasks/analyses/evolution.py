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

from ...diagnostics.layers import conv_layer_names
from ...figures import emit, fig4
from ...runs import Checkpoint, build_dataset, read_checkpoint
from ...utils.options import at_least, maps_option, option_rules
from ...utils.skips import say_skipped
from ...utils.tensors import seeded_subset

if TYPE_CHECKING:
    from ..analyze import AnalysisContext


def checkpoints(ref: Path, explicit) -> list[Checkpoint]:
    """The checkpoints to show, one per epoch, in epoch order (each file read once)."""
    paths = [Path(p) for p in explicit] if explicit else sorted(ref.parent.glob("*.ckpt"))
    paths = list(dict.fromkeys([*paths, ref]))
    by_epoch: dict[int, Checkpoint] = {}
    for p in sorted(paths, key=lambda q: (q.name == "last.ckpt", str(q))):
        ckpt = read_checkpoint(p)
        by_epoch.setdefault(ckpt.epoch + 1, ckpt)  # last.ckpt duplicates an epoch file: keep the named one
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
    subset = seeded_subset(len(ds), num_images, seed)
    ckpts = checkpoints(Path(ctx.checkpoint), ckpts)
    cells: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    records: dict[str, list[dict]] = {layer: [] for layer in layers}
    epochs, skipped = [], {}
    for ckpt in ckpts:
        model = ckpt.model(ctx.device)
        epochs.append(ckpt.epoch + 1)
        column = fig4.compute(
            model,
            ds,
            subset,
            layers,
            maps,
            seed,
            ctx.batch_size,
            ctx.device,
            epoch=epochs[-1],
            checkpoint=str(ckpt.path),
        )
        skipped.update(column.skipped)
        for layer, c in column.cells.items():
            cells[layer].append(c)
            records[layer].append(column.records[layer])
    say_skipped("evolution figures", skipped)
    for layer in [layer for layer in layers if layer not in skipped]:  # a layer skipped once stays out
        emit(ctx.sink, fig4.draw(layer, cells[layer], records[layer], f"{len(subset)} fixed {images} images"), step)
    return {"epochs": epochs, "checkpoints": [str(c.path) for c in ckpts]}
