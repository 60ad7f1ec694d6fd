"""Paper Fig. 4 during training: how a fixed set of feature maps develops over the epochs.

At chosen (1-based) epochs, for a fixed seeded set of maps per layer, find each map's strongest
activation over a fixed training subset (``num_images`` images drawn once with ``seed``), project it
with the deconvnet and keep the projection. The training images are read with the *evaluation*
transform (a shallow copy of ``train_set`` with ``val_set.transform``): random crops/flips would make
the "strongest image" change between epochs for reasons that have nothing to do with learning.

Logged at each scheduled epoch under one key per layer, ``diag/<layer>/evolution`` (a W&B step slider):
the strip so far (rows = maps labelled "<layer> / map <index>", columns = scheduled epochs labelled "epoch <n>",
cells of ``cell_px`` pixels; :mod:`zfnet_exp.figures.fig4`), so the last image is the full Fig. 4. With the
dissect callback on, rows are headed with the epoch's label and IoU ("map 25 · ring · IoU 0.31").
Only rank 0 works; no collective is involved (the subset is small and the model is replicated).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import lightning as L
import torch

from ..data.normalize import NormalizedView
from ..diagnostics.layers import conv_layer_names, layer_label
from ..figures import emit, fig4
from ..utils.options import at_least, each, maps_option, option_rules
from ..utils.skips import say_skipped
from ..utils.tensors import seeded_subset
from ..viz import ImageSink
from .dissect import dissection_for

DEFAULT_EPOCHS = (1, 2, 5, 10, 20, 30, 40, 64)


def schedule(epochs: Sequence[int], max_epochs: int | None) -> list[int]:
    """The 1-based epochs to record: ``epochs`` clipped to ``max_epochs``, always including the last."""
    if max_epochs is None or max_epochs < 0:
        return sorted({int(e) for e in epochs})
    return sorted({int(e) for e in epochs if 1 <= int(e) <= max_epochs} | {int(max_epochs)})


@option_rules(
    maps=maps_option,
    epochs=each(at_least(1)),  # 1-based epoch numbers
    num_images=at_least(1),
    batch_size=at_least(1),
    cell_px=at_least(8),
)
class FeatureEvolution(L.Callback):
    def __init__(
        self,
        layers: Sequence[str] | None = None,
        maps: int | str | Sequence[int] | None = 6,
        epochs: Sequence[int] = DEFAULT_EPOCHS,
        num_images: int = 256,
        seed: int = 0,
        batch_size: int = 64,
        cell_px: int = 96,
    ):
        self.layers = list(layers) if layers else None  # None: every conv layer the model has
        self.maps = maps
        self.epochs = list(epochs)
        self.num_images = num_images
        self.seed = seed
        self.batch_size = batch_size
        self.cell_px = int(cell_px)
        self.logged_epochs: list[int] = []
        self.cells: dict[str, list[torch.Tensor]] = {}  # layer -> per epoch [M, 3, h, w]
        self.records: dict[str, list[dict]] = {}

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.layers is None:  # Table 3 ablations lack conv3/conv4: default to the layers that exist
            self.layers = conv_layer_names(pl_module.model)

    def state_dict(self) -> dict:
        """Projections kept so far (uint8, a few MB at most) so a resumed run continues the same strip."""
        return {
            "logged_epochs": list(self.logged_epochs),
            "records": self.records,
            "cells": {k: [(c * 255).round().to(torch.uint8) for c in v] for k, v in self.cells.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.logged_epochs = list(state.get("logged_epochs", []))
        self.records = dict(state.get("records", {}))
        self.cells = {k: [c.float() / 255 for c in v] for k, v in state.get("cells", {}).items()}

    def _dataset(self, dm):
        """Train images with the eval transform (see module docstring), normalized as the network sees them."""
        ds = copy.copy(dm.train_set)
        if getattr(dm, "val_set", None) is not None and hasattr(ds, "transform"):
            ds.transform = dm.val_set.transform
        norm = getattr(dm, "normalizer", None)
        return NormalizedView(ds, norm) if norm is not None else ds

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch + 1
        if epoch not in schedule(self.epochs, trainer.max_epochs) or epoch in self.logged_epochs:
            return
        ds = self._dataset(trainer.datamodule)
        subset = seeded_subset(len(ds), self.num_images, self.seed)
        column = fig4.compute(
            pl_module.model,
            ds,
            subset,
            self.layers,
            self.maps,
            self.seed,
            self.batch_size,
            pl_module.device,
            epoch=epoch,
        )
        sink = ImageSink.from_trainer(trainer)
        self.logged_epochs.append(epoch)
        dissection = dissection_for(trainer, pl_module) or {}  # this epoch's, when the dissect callback is on
        for layer, cells in column.cells.items():  # a layer skipped once has fewer columns
            self.cells.setdefault(layer, []).append(cells)
            self.records.setdefault(layer, []).append(column.records[layer])
            fig = fig4.draw(
                layer,
                self.cells[layer],
                self.records[layer],
                f"{len(subset)} fixed training images",
                self.cell_px,
                dissection=dissection.get(layer_label(pl_module.model, layer)),
            )
            emit(sink, fig, trainer.global_step)
        say_skipped("evolution figures", column.skipped)
