"""Occlusion sensitivity (ZF Fig. 7) of a few fixed validation images, every ``every_n_epochs`` epochs.

Thin: picks *when* (end of a validation epoch, not the sanity check) and *which* images (``num_probes``
indices drawn once with ``seed`` from ``trainer.datamodule.val_set``: the same on every rank and in every
epoch, so the figures form a time series), calls
:func:`zfnet_exp.diagnostics.occlusion.occlusion_sensitivity` for the true class, and hands the Fig. 7
figure and the grids (JSON) to the image sink under ``diag/occlusion/<probe>``.

DDP: the work is local to global rank 0 and uses no collective, so the other ranks simply skip it (nothing
is reached by only some ranks). The model's train/eval modes are restored afterwards (the diagnostic runs
in eval mode under ``no_grad``; the deconvnet projection needs autograd, which is enabled explicitly since
Lightning may call us inside ``inference_mode``).

Sizes: at 64 px inputs ``patch=16, stride=4`` gives 13x13 positions (about a second per probe on a CPU);
at 224 px use ``patch=56, stride=8`` (22x22 positions; the paper's grey square is about a quarter of the side).
"""

from __future__ import annotations

import lightning as L

from ..data.normalize import normalized_split
from ..diagnostics.autograd import input_gradients_only
from ..diagnostics.deconvnet import DeconvnetNotApplicable
from ..diagnostics.geometry import NoReceptiveField
from ..diagnostics.occlusion import occlusion_sensitivity
from ..diagnostics.projections import strongest_unit_projection
from ..utils.options import at_least, option_rules
from ..utils.skips import say_skipped
from ..utils.tensors import seeded_subset
from ..viz import ImageSink
from ..viz.occlusion_figure import occlusion_figure, result_payload
from ._util import denormalizer, diagnostic_due


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
        res = occlusion_sensitivity(model, x, int(y), self.patch, self.stride, self.fill, self.layer, self.batch_size)
        proj = None
        if self.projection and res.channel is not None:
            try:
                proj = strongest_unit_projection(model, x, res.layer, res.channel)
            except (DeconvnetNotApplicable, NoReceptiveField) as err:
                say_skipped("occlusion deconvnet panel", {res.layer: err})
        shown = denorm(x.cpu())
        name = classes[int(y)] if classes else str(int(y))
        key = f"diag/occlusion/{int(index):06d}"
        fig = occlusion_figure(
            shown, res, classes, proj, title=f"val image {int(index)} ({name}), epoch {epoch} (step {step})"
        )
        sink.log_image(key, fig, step=step, caption=f"{name}: p={res.clean_prob:.2f}")
        sink.log_json(key, result_payload(res, classes, index=int(index), step=step), step=step)
