"""Paper Fig. 2 during training: the top-9 images of feature maps, projected by the deconvnet.

Mining costs almost nothing extra: forward hooks on the validation pass feed a streaming
:class:`~zfnet_exp.diagnostics.topk.TopKAccumulator` keyed by the batch's dataset indices (``batch[2]``).
At the end of the validation epoch every rank gathers the buffers (a collective on all ranks), so the
result equals one process scanning the whole validation set; only rank 0 then projects the chosen maps
(autograd re-enabled locally: Lightning validates under ``inference_mode``) and logs one figure per layer
(``diag/<layer>/top9``: ``maps`` maps, ``maps_per_row`` to a row, each headed "map <index>" (with the
dissect callback on: "map 25 · ring · IoU 0.31", this epoch's label), patches labelled
with their class, cells of ``cell_px`` pixels; see :mod:`zfnet_exp.figures.fig2`) and its JSON
(values, dataset indices, positions) through the image sink.

Default 8 maps, 3 to a row (rows of 3, 3, 2): at 96 px cells a layer's figure is about 2000 x 1200 px, about
the most a W&B media panel shows without shrinking the cells out of legibility (4 to a row would be 2700 px);
8 keeps the projection work of earlier versions, so the figures cost no extra time per epoch. ``maps: all``
is for the offline analysis.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack

import lightning as L

from ..data.normalize import denormalizer, normalized_split
from ..diagnostics.layers import conv_layer_names
from ..diagnostics.topk import TopKAccumulator
from ..figures import emit, fig2
from ..utils.options import at_least, maps_option, option_rules
from ..viz import ImageSink
from ._util import capture_first, diagnostic_due, gather_topk, layer_channels
from .dissect import dissection_for


@option_rules(
    k=at_least(1), maps=maps_option, every_n_epochs=at_least(1), maps_per_row=at_least(1), cell_px=at_least(8)
)
class Top9Deconv(L.Callback):
    def __init__(
        self,
        layers: Sequence[str] | None = None,
        k: int = 9,
        maps: int | str | Sequence[int] | None = 8,
        seed: int = 0,
        every_n_epochs: int = 1,
        maps_per_row: int = 3,
        cell_px: int = 96,
    ):
        self.layers = list(layers) if layers else None  # None: every conv layer the model has
        self.k = k
        self.maps = maps
        self.seed = seed
        self.every_n_epochs = every_n_epochs
        self.maps_per_row = maps_per_row
        self.cell_px = int(cell_px)
        self._acc: TopKAccumulator | None = None
        self._hooks: ExitStack | None = None
        self._acts: dict | None = None
        self.last_result = None  # {layer: TopK} of the last mined epoch (all ranks), for tests and users

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.layers is None:  # Table 3 ablations lack conv3/conv4: default to the layers that exist
            self.layers = conv_layer_names(pl_module.model)

    def _active(self, trainer) -> bool:
        return diagnostic_due(trainer, self.every_n_epochs)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if not self._active(trainer):
            return
        model = pl_module.model
        probe = normalized_split(trainer.datamodule, "val")[0][0][None].to(pl_module.device)
        channels = layer_channels(model, self.layers, probe)
        self._acc = TopKAccumulator(self.layers, self.k, channels=channels)
        self._hooks = ExitStack()
        self._acts = self._hooks.enter_context(capture_first(model, self.layers))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self._acts is not None:
            self._acts.clear()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._acc is None or dataloader_idx != 0:
            return
        if all(layer in self._acts for layer in self.layers):
            self._acc.update(self._acts, batch[2])
        self._acts.clear()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._acc is None:
            return
        self._hooks.close()
        acc, self._acc, self._hooks, self._acts = self._acc, None, None, None
        result = gather_topk(pl_module, acc, self.layers)  # every rank
        self.last_result = result
        if not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        sink = ImageSink.from_trainer(trainer)
        step, epoch = trainer.global_step, trainer.current_epoch + 1
        dissection = dissection_for(trainer, pl_module)  # this epoch's, when the dissect callback is on
        for _, fig in fig2.figures(
            pl_module.model,
            normalized_split(dm, "val"),
            result,
            self.layers,
            maps=self.maps,
            seed=self.seed,
            device=pl_module.device,
            denorm=denormalizer(dm),
            classes=list(getattr(dm, "classes", None) or []),
            images="validation images",
            when=f"epoch {epoch} (step {step})",
            maps_per_row=self.maps_per_row,
            cell=self.cell_px,
            dissection=dissection,
            epoch=epoch,
        ):
            emit(sink, fig, step)

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self._hooks is not None:
            self._hooks.close()
            self._hooks = self._acc = None
