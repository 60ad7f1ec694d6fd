"""Per-step reseeding of the process RNGs, so that a resumed run replays the very same dropout masks and
main-process augmentations as the uninterrupted run.

Why: Lightning checkpoints hold the model, optimizer, schedulers and loop counters but not the RNG states. A
resumed process starts from ``seed_everything(seed)`` plus whatever its start-up consumed (model init, a sanity
check), so without this its epoch ``e`` draws different random numbers than the uninterrupted run's epoch ``e``
did, and the two runs drift apart (one of the two causes of issue 12's val loss 3.80 vs 2.31; the other was a stale
``last.ckpt``, see :mod:`zfnet_exp.callbacks.checkpoint`). Reseeding from ``(seed, global step, rank)`` before
each step's batch is fetched (at the end of the previous step, at each epoch start, and when training starts,
which is where a resumed run begins) makes each step's randomness a function of its number alone, whether the run
resumes from an end-of-epoch or a mid-epoch (preemption) checkpoint. Together with
:mod:`zfnet_exp.data.sampling` (data order per epoch, the rest of an epoch after a mid-epoch resume, worker seeds
per epoch) a resumed run is bit-identical on CPU with in-process loading (``data.num_workers=0``); with worker
processes it is identical after an end-of-epoch checkpoint (workers restart each epoch) and has the same batches
but other random crops after a mid-epoch one.
"""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch

from ..data.sampling import derived_seed


class StepSeed(L.Callback):
    def __init__(self, seed: int):
        self.seed = int(seed)

    def _reseed(self, trainer) -> None:
        s = derived_seed(self.seed, trainer.global_step, trainer.global_rank)
        torch.manual_seed(s)  # CPU and every CUDA device
        np.random.seed(s % 2**32)
        random.seed(s)

    def on_train_start(self, trainer, pl_module) -> None:
        self._reseed(trainer)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._reseed(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._reseed(trainer)


class ResumeDataOrder(L.Callback):
    """On a resumed fit, has Lightning rebuild the training DataLoader once the checkpoint is restored.

    Why: Lightning builds (and with worker processes, starts iterating) the training DataLoader while sizing the LR
    schedule, before it restores the loops from the checkpoint, and keeps that iterator for the first resumed
    epoch. The sampler then still believes it is epoch 0 at batch 0, and the resumed run replays epoch 0's order
    instead of continuing its own epoch. Dropping the cached loader here (after the restore, before the first
    epoch's ``setup_data``) lets the datamodule build the sampler at the restored epoch and batch."""

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.ckpt_path is not None:
            trainer.fit_loop._combined_loader = None  # Lightning 2.x: rebuilt by FitLoop.setup_data()
