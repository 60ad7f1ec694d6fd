"""A grid of the first training batch (as the network sees it, de-normalized) at the start of training: the
quickest check that data, labels and augmentation are what you think. Logged once through the sink."""

from __future__ import annotations

import lightning as L
from torchvision.utils import make_grid

from ..data.normalize import denormalizer
from ..viz import ImageSink


class TrainSamples(L.Callback):
    def __init__(self, num_images: int = 16):
        self.num_images = num_images
        self._done = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._done:
            return
        self._done = True
        dm = trainer.datamodule
        x, y = batch[0][: self.num_images].detach().cpu(), batch[1][: self.num_images].tolist()
        x = denormalizer(dm)(x)  # the batch is already normalized (on_after_batch_transfer)
        names = getattr(dm, "classes", None)
        caption = ", ".join(names[i] if names else str(i) for i in y)
        grid = make_grid(x, nrow=8, padding=2, pad_value=1.0)
        ImageSink.from_trainer(trainer).log_image("data/train_samples", grid, step=trainer.global_step, caption=caption)
