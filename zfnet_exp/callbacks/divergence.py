"""Stop a diverging run at the first non-finite training loss, before anything from it is saved.

Why: a learning rate that is far too large (``model.optimizer.lr=1e4``) turns the loss into ``nan`` within a
step or two; without this callback the run trains every remaining epoch on ``nan``, exits 0, prints its summary
as if it had trained, and its checkpoint callback overwrites the last good ``last.ckpt`` with ``nan`` weights
(``nan`` metrics can even be ranked "best"). Here:

* after every optimizer step, a non-finite loss on any rank (one all-reduce of a bool under DDP, so every rank
  stops at the same step) counts towards ``patience`` consecutive steps; at ``patience`` the run stops with one
  paragraph: the step, the epoch, the learning rate, the last finite loss and what to change;
* after every validation, a non-finite logged loss (``val/loss``: the weights already produce ``inf`` on held-out
  images even if the last training loss was a huge finite number) stops the run at once; this callback runs
  before the checkpoint callback (Lightning runs checkpoint callbacks last), so that epoch is not saved;
* every checkpoint save first checks that the parameters and the logged losses are finite and refuses to write
  otherwise (the same paragraph), so with ``patience > 1`` no non-finite model becomes "best" or replaces
  ``last.ckpt``.

The error is a :class:`~zfnet_exp.errors.UserError`: the task runner prints the paragraph, marks the W&B run
failed and exits with code 2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from ..errors import UserError
from ..utils.options import at_least, option_rules


class TrainingDiverged(UserError):
    """The training loss (or the weights) became non-finite."""


@option_rules(patience=at_least(1))
class StopOnDivergence(Callback):
    def __init__(self, patience: int = 1):
        self.patience = int(patience)
        self._bad_steps = 0
        self._last_finite: tuple[float, int] | None = None  # (loss, step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor):  # manual optimization without a returned loss
            return
        value = float(loss.detach().float().mean())
        bad = trainer.strategy.reduce_boolean_decision(not math.isfinite(value), all=False)
        if not bad:
            self._bad_steps = 0
            self._last_finite = (value, trainer.global_step)
            return
        self._bad_steps += 1
        if self._bad_steps >= self.patience:
            raise TrainingDiverged(
                self._message(
                    trainer,
                    f"the training loss is {value}",
                    f"; {self._bad_steps} non-finite step(s) in a row stop the run at callbacks.divergence.patience="
                    f"{self.patience}",
                )
            )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        bad = _nonfinite_losses(trainer)
        if bad:
            raise TrainingDiverged(self._message(trainer, f"the logged {bad} after validation"))

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        weights = any(not bool(torch.isfinite(p.detach()).all()) for p in pl_module.parameters())
        if trainer.strategy.reduce_boolean_decision(weights, all=False):
            raise TrainingDiverged(
                self._message(trainer, "the model's weights are not finite (a checkpoint was about to be saved)")
            )
        bad = _nonfinite_losses(trainer)
        if bad:
            raise TrainingDiverged(self._message(trainer, f"the logged {bad} (a checkpoint was about to be saved)"))

    def _message(self, trainer: L.Trainer, what: str, detail: str = "") -> str:
        lr = _learning_rate(trainer)
        last = (
            f"the last finite training loss was {self._last_finite[0]:.4g} at step {self._last_finite[1]}"
            if self._last_finite is not None
            else "no step had a finite loss"
        )
        ckpt = trainer.checkpoint_callback
        last_ckpt = Path(ckpt.dirpath) / "last.ckpt" if ckpt is not None and ckpt.dirpath else None
        if last_ckpt is not None and last_ckpt.is_file():
            kept = f"nothing from the non-finite steps was saved: {last_ckpt} still holds the last good state"
        else:
            kept = "nothing from the non-finite steps was saved (no checkpoint had been written yet)"
        return (
            f"Training diverged: {what} at step {trainer.global_step} (epoch {trainer.current_epoch + 1}) with "
            f"learning rate {lr}{detail}; {last}. The run stopped and {kept}. Lower the learning rate (e.g. "
            f"model.optimizer.lr={_tenth(lr)}), clip gradients (trainer.gradient_clip_val=1.0) or lengthen the warm-up "
            f"(model.scheduler.warmup_frac), and run again."
        )


def _nonfinite_losses(trainer: L.Trainer) -> str:
    """``"val/loss is inf"``-style text for every logged loss that is not finite ("" if none); the metrics are
    already reduced over ranks, so every rank decides the same."""
    bad = [
        f"{name} is {float(v)}"
        for name, v in trainer.callback_metrics.items()
        if "loss" in name and isinstance(v, torch.Tensor) and v.numel() == 1 and not math.isfinite(float(v))
    ]
    return ", ".join(bad)


def _learning_rate(trainer: L.Trainer) -> str:
    try:
        return f"{trainer.optimizers[0].param_groups[0]['lr']:.4g}"
    except (IndexError, KeyError, AttributeError):
        return "unknown"


def _tenth(lr: str) -> str:
    try:
        return f"{float(lr) / 10:.3g}"
    except ValueError:
        return "<smaller>"
