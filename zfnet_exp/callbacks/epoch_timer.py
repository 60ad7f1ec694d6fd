"""Wall time and training throughput of every epoch in the metrics (``time/epoch_s``, ``time/train_img_per_s``),
so that a comparison of runs can say what a variant costs, from the run folder alone (``metrics.csv``), also for
runs whose stdout went nowhere.

``time/epoch_s`` is the epoch's wall time from its first training batch's start to the end of its validation
(the hook order of Lightning: validation runs before ``on_train_epoch_end``); ``time/train_img_per_s`` counts the
training images of all ranks over the training batches' time alone (start of the epoch to the end of its last
training batch), so a long validation does not lower it. Summed over the epochs, ``time/epoch_s`` is the run's
training time, resumed or not (a requeued job logs the epochs it ran).
"""

from __future__ import annotations

import time

import lightning as L
from lightning.pytorch.callbacks import Callback


class EpochTimer(Callback):
    def __init__(self) -> None:
        self._start = self._last_batch = 0.0
        self._images = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._last_batch = time.perf_counter()
        self._images = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += len(batch[0]) * trainer.world_size
        self._last_batch = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        took = time.perf_counter() - self._start
        training = self._last_batch - self._start
        pl_module.log("time/epoch_s", float(took), on_epoch=True, on_step=False, sync_dist=False)
        if self._images and training > 0:
            rate = self._images / training
            pl_module.log("time/train_img_per_s", float(rate), on_epoch=True, on_step=False, sync_dist=False)
