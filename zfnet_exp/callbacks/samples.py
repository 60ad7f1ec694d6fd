"""A grid of the first training batch (as the network sees it, de-normalized) at the start of training: the
quickest check that data, labels and augmentation are what you think. Logged once through the sink, each
image under its class name (in the PNG itself, not only in the W&B caption: the run folder's file is the
record for CSV runs), enlarged to about ``cell_px`` pixels (:func:`zfnet_exp.viz.canvas.labelled_grid_figure`)."""

from __future__ import annotations

import lightning as L

from ..data.normalize import denormalizer
from ..utils.options import at_least, option_rules
from ..viz import ImageSink
from ..viz.canvas import labelled_grid_figure


@option_rules(num_images=at_least(1), per_row=at_least(1), cell_px=at_least(8))
class TrainSamples(L.Callback):
    def __init__(self, num_images: int = 16, per_row: int = 8, cell_px: int = 96):
        self.num_images = num_images
        self.per_row = per_row
        self.cell_px = cell_px
        self._done = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._done:
            return
        self._done = True
        dm = trainer.datamodule
        x, y = batch[0][: self.num_images].detach().cpu(), batch[1][: self.num_images].tolist()
        x = denormalizer(dm)(x)  # the batch is already normalized (on_after_batch_transfer)
        names = getattr(dm, "classes", None)
        labels = [names[i] if names and isinstance(i, int) else str(i) for i in y]
        size = "x".join(map(str, x.shape[-2:]))
        title = f"first training batch, epoch {trainer.current_epoch + 1}: {size} px crops as the network sees them"
        fig = labelled_grid_figure(x, labels, title, cell=self.cell_px, nrow=self.per_row)
        ImageSink.from_trainer(trainer).log_image(
            "data/train_samples", fig, step=trainer.global_step, caption=", ".join(labels)
        )
