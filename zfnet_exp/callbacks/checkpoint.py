"""``ModelCheckpoint`` whose ``last.ckpt`` really is the last epoch.

Why: since Lightning 2.5/2.6, ``save_last=True`` writes ``last.ckpt`` only in a step where a top-k checkpoint
was saved too ("Only save last checkpoint if a checkpoint was actually saved in this step"): with
``save_top_k=1`` and a monitored metric that did not improve, ``last.ckpt`` silently stays at the best epoch.
A resume or a requeued job then restarts from that stale epoch and ends somewhere else than the uninterrupted
run (issue 12's val loss 3.80 vs 2.31). This subclass writes ``last.ckpt`` at the end of every epoch that did not
already write one. Its state is stored under ModelCheckpoint's own key, so checkpoints stay readable by
:func:`zfnet_exp.utils.checkpoints.resolve_checkpoint` and by plain ``ModelCheckpoint``.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn


class RunCheckpoint(ModelCheckpoint):
    @property
    def state_key(self) -> str:
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def _last_due(self, trainer) -> bool:
        return (
            bool(self.save_last)
            and not trainer.fast_dev_run
            and trainer.state.fn == TrainerFn.FITTING
            and not trainer.sanity_checking
            and self._last_global_step_saved != trainer.global_step
        )

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer) and self._last_due(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer) and self._last_due(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
