"""Progress as plain text lines, for stdout that is not a terminal (a SLURM log, ``python train.py > log``).

Why: a tqdm bar redraws one line with carriage returns; in a file that is either nothing (Lightning's bar writes
nothing when stdout is redirected) or megabytes of partial lines. A cluster user reading ``tail -f`` of the job
log wants, every N steps and once per epoch, one line with the step, the throughput, the ETA and the main metrics:

    epoch 3/12 step 250/1600 | 412 img/s | ETA 0:05:31 | train/loss 1.834
    epoch 3/12 done step 400/1600 | 405 img/s | 0:00:59/epoch | ETA 0:11:47 | train/loss 1.802 val/loss 1.702 ...

Only values that are current where a line is printed: the training values logged at that step (the loss; the
epoch's training accuracy is aggregated only after the epoch's validation, so any earlier line would show the
previous epoch's under this epoch's number) and, on the epoch line, the validation that has just ended. The
epoch's training accuracy is in metrics.csv and the logger.

Lightning replaces its default bar by any :class:`ProgressBar` callback, so this one takes its place; the train
task installs it when ``progress.plain`` is ``auto`` and stdout is not a TTY (or when it is ``true``), and so do
the offline tasks' loops (eval's test loop, transfer's fine-tuning and prediction) through
:func:`progress_callbacks`:

    evaluating: batch 50/1563 | 412 img/s | ETA 0:05:31
"""

from __future__ import annotations

import datetime as dt
import sys
import time

import torch
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar

MAIN_METRICS = ("loss", "acc_top1", "acc_top5", "err_top1")


def _fmt_eta(seconds: float) -> str:
    return str(dt.timedelta(seconds=int(max(0.0, seconds))))


class PlainProgress(ProgressBar):
    def __init__(self, every_n_steps: int = 50, stream=None):
        super().__init__()
        self.every_n_steps = max(1, int(every_n_steps))
        self._stream = stream
        self._enabled = True
        self._t_fit = self._t_epoch = 0.0
        self._steps_at_epoch = self._steps_at_fit = 0
        self._images = 0
        self._t_window = 0.0
        self._images_window = 0
        self._t_loop = 0.0

    # ProgressBar interface
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _print(self, line: str) -> None:
        if self._enabled and self.trainer.is_global_zero:
            print(line, file=self._stream or sys.stdout, flush=True)

    def _total_steps(self) -> float:
        return self.trainer.estimated_stepping_batches

    def _metrics(self, prefix: str) -> str:
        """Training: the values logged at this step (``<key>_step``); validation: those of the validation that
        has just ended."""
        suffixes = ("_step",) if prefix == "train" else ("", "_epoch")
        items = []
        for name in MAIN_METRICS:
            for key in (f"{prefix}/{name}{suffix}" for suffix in suffixes):
                v = self.trainer.callback_metrics.get(key)
                if isinstance(v, torch.Tensor) and v.numel() == 1:
                    items.append(f"{prefix}/{name} {float(v):.4f}")
                    break
        return " ".join(items)

    def _eta(self, now: float) -> str:
        done = self.trainer.global_step - self._steps_at_fit
        if done <= 0:
            return "?"
        left = self._total_steps() - self.trainer.global_step
        return _fmt_eta((now - self._t_fit) / done * left)

    def on_train_start(self, trainer, pl_module) -> None:
        self._t_fit = self._t_window = self._t_epoch = time.perf_counter()  # a mid-epoch resume starts here
        self._steps_at_fit = trainer.global_step
        self._print(
            f"training: epochs {trainer.current_epoch + 1}..{trainer.max_epochs}, {self.total_train_batches} batches "
            f"per epoch, {int(self._total_steps())} optimizer steps in all, from step {trainer.global_step}"
        )

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t_epoch = time.perf_counter()
        self._steps_at_epoch = trainer.global_step
        self._images = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = len(batch[0]) * trainer.world_size
        self._images += n
        self._images_window += n
        if trainer.global_step % self.every_n_steps:
            return
        now = time.perf_counter()
        rate = self._images_window / max(now - self._t_window, 1e-9)
        self._t_window, self._images_window = now, 0
        self._print(
            f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} step {trainer.global_step}/"
            f"{int(self._total_steps())} | {rate:.0f} img/s | ETA {self._eta(now)} | {self._metrics('train')}"
        )

    # the loops of the offline tasks (Trainer.test / Trainer.predict): a line every N batches and one at the end
    def _loop_start(self, what: str, total: int) -> None:
        self._t_loop = self._t_window = time.perf_counter()
        self._images_window = 0
        self._print(f"{what}: {total} batches")

    def _loop_step(self, what: str, batch, batch_idx: int, total: int) -> None:
        n = len(batch[0]) * self.trainer.world_size
        self._images_window += n
        done = batch_idx + 1
        if done % self.every_n_steps and done != total:
            return
        now = time.perf_counter()
        rate = self._images_window / max(now - self._t_window, 1e-9)
        self._t_window, self._images_window = now, 0
        eta = _fmt_eta((now - self._t_loop) / done * (total - done))
        self._print(f"{what}: batch {done}/{total} | {rate:.0f} img/s | ETA {eta}")

    def on_test_start(self, trainer, pl_module) -> None:
        self._loop_start("evaluating", int(sum(trainer.num_test_batches)))

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._loop_step("evaluating", batch, batch_idx, int(sum(trainer.num_test_batches)))

    def on_predict_start(self, trainer, pl_module) -> None:
        self._loop_start("predicting", int(sum(trainer.num_predict_batches)))

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._loop_step("predicting", batch, batch_idx, int(sum(trainer.num_predict_batches)))

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        now = time.perf_counter()
        took = now - self._t_epoch
        self._print(
            f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} done step {trainer.global_step}/"
            f"{int(self._total_steps())} | {self._images / max(took, 1e-9):.0f} img/s | "
            f"{_fmt_eta(took)}/epoch | ETA {self._eta(now)} | {self._metrics('train')} {self._metrics('val')}"
        )


def progress_callbacks(enabled: bool = True, plain: bool | str = "auto", every_n_steps: int = 50) -> list:
    """The progress display of a Lightning loop: Lightning's own bar on a terminal, :class:`PlainProgress` lines
    where stdout is a file (``plain="auto"``; ``True`` always, ``False`` never). Pass ``enable_progress_bar=enabled``
    to the Trainer with it: Lightning then uses this callback in place of its bar."""
    if enabled and (plain is True or (plain == "auto" and not sys.stdout.isatty())):
        return [PlainProgress(every_n_steps=every_n_steps)]
    return []
