"""Occlusion sensitivity (ZF Fig. 7) of a few fixed validation images, every ``every_n_epochs`` epochs.

Thin: picks *when* (end of a validation epoch, not the sanity check) and *which* images (``num_probes``
indices drawn once with ``seed`` from ``trainer.datamodule.val_set``: the same on every rank and in every
epoch, so the figures form a time series), computes and
draws the Fig. 7 of each for the true class (:mod:`zfnet_exp.figures.fig7`) and hands the figure and the grids
(JSON) to the image sink under ``diag/occlusion/<probe>``.

DDP: the work is local to global rank 0 and uses no collective, so the other ranks simply skip it (nothing
is reached by only some ranks). The model's train/eval modes are restored afterwards (the diagnostic runs
in eval mode under ``no_grad``; the deconvnet projection needs autograd, which is enabled explicitly since
Lightning may call us inside ``inference_mode``).

Sizes: at 64 px inputs ``patch=16, stride=4`` gives 13x13 positions (about a second per probe on a CPU);
at 224 px use ``patch=56, stride=8`` (22x22 positions; the paper's grey square is about a quarter of the side).
"""

from __future__ import annotations

import lightning as L

from ..data.normalize import denormalizer, normalized_split
from ..diagnostics.autograd import input_gradients_only
from ..figures import emit, fig7
from ..utils.options import at_least, option_rules
from ..utils.tensors import seeded_subset
from ..viz import ImageSink
from ._util import diagnostic_due


@option_rules(**dict.fromkeys(("every_n_epochs", "num_probes", "patch", "stride", "batch_size"), at_least(1)))
class OcclusionSensitivity(L.Callback):
    def __init__(
        self,
        every_n_epochs: int = 5,
        num_probes: int = 4,
        patch: int = 16,
        stride: int = 4,
        fill: float = 0.0,
        layer: str | None = "conv5",
        projection: bool = True,
        batch_size: int = 64,
        seed: int = 0,
    ):
        self.every_n_epochs = int(every_n_epochs)
        self.num_probes = int(num_probes)
        self.patch, self.stride, self.fill = int(patch), int(stride), float(fill)
        self.layer = layer
        self.projection = projection
        self.batch_size = int(batch_size)
        self.seed = int(seed)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not diagnostic_due(trainer, self.every_n_epochs) or not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        val_set = normalized_split(dm, "val")  # items as the network sees them
        if val_set is None or len(val_set) == 0:
            return
        model = getattr(pl_module, "model", pl_module)
        device = next(model.parameters()).device
        denorm = denormalizer(dm)
        classes = list(getattr(dm, "classes", None) or []) or None
        sink = ImageSink.from_trainer(trainer)
        with input_gradients_only(model):
            for idx in seeded_subset(len(val_set), self.num_probes, self.seed):
                self._probe(model, val_set, idx, device, denorm, classes, sink, trainer)

    def _probe(self, model, val_set, idx, device, denorm, classes, sink: ImageSink, trainer) -> None:
        step, epoch = trainer.global_step, trainer.current_epoch + 1
        x, y, index = val_set[idx]
        x = x.to(device)
        occ = fig7.compute(
            model,
            x,
            int(y),
            patch=self.patch,
            stride=self.stride,
            fill=self.fill,
            layer=self.layer,
            batch_size=self.batch_size,
            projection=self.projection,
        )
        name = classes[int(y)] if classes else str(int(y))
        title = f"val image {int(index)} ({name}), epoch {epoch} (step {step})"
        fig = fig7.draw(
            occ, denorm(x.cpu()), classes, f"diag/occlusion/{int(index):06d}", title, index=int(index), step=step
        )
        emit(sink, fig, step)
