"""Save a checkpoint when the scheduler announces a preemption or the time limit, then hand over to the one
component that requeues the job: submitit.

Ownership (see framework-anchors.md, "Requeue ownership pitfalls"): submitit installs its USR2 handler when the
job starts and, on the signal, resubmits the Hydra job (``scontrol requeue`` on SLURM, a restart under the local
executor). Lightning's own SLURM auto-requeue is switched off (``SLURMEnvironment(auto_requeue=False)``, see
:func:`cluster_plugins`), so exactly one component requeues. submitit does not save a Lightning checkpoint, and
saving inside a signal handler can corrupt or hang (Lightning #21406): this callback's handler only sets a
flag; at the next batch boundary every rank agrees on it (one all-reduce of a bool under DDP), the trainer writes
``last.ckpt`` (atomically, :mod:`zfnet_exp.utils.atomic_checkpoint`), and then the previous handler (submitit's)
runs, requeues and exits. The requeued job finds ``last.ckpt`` in its (stable) run folder and resumes from it.

Without a previous handler (a plain ``python train.py`` sent USR2 by a scheduler that will not requeue) the run
stops right after the save, says how to resume, and exits with 128 + the signal number (it did not finish).
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from pathlib import Path

import lightning as L
from lightning.pytorch.plugins.environments import SLURMEnvironment

from ..utils.launch import say


def preemption_signal() -> signal.Signals:
    """The signal submitit uses (``SUBMITIT_PREEMPT_SIGNAL``, USR2 by default)."""
    import os

    return signal.Signals[f"SIG{os.environ.get('SUBMITIT_PREEMPT_SIGNAL', 'USR2').upper().removeprefix('SIG')}"]


def cluster_plugins() -> list:
    """Under SLURM: Lightning's cluster environment with its auto-requeue off (submitit owns requeueing)."""
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


class SaveOnPreemption(L.Callback):
    def __init__(self, signals: tuple[signal.Signals, ...] | None = None):
        self.signals = tuple(signals) if signals else (preemption_signal(),)
        self._previous: dict[int, object] = {}
        self._caught: int | None = None

    def _handler(self, signum, frame) -> None:
        self._caught = signum

    def setup(self, trainer, pl_module, stage: str) -> None:
        # before Lightning builds the loaders: DataLoader workers are forked with this handler, and SLURM signals
        # every process of the job step (a worker inheriting submitit's handler would requeue and exit itself)
        if stage != "fit" or self._previous:
            return
        for sig in self.signals:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handler)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        caught = trainer.strategy.reduce_boolean_decision(self._caught is not None, all=False)
        if not caught:
            return
        signum = self._caught or int(self.signals[0])
        path = self.checkpoint_path(trainer)
        trainer.save_checkpoint(path)  # every rank: the strategy decides who writes
        say(
            f"Caught {signal.Signals(signum).name} at epoch {trainer.current_epoch} step {trainer.global_step}: "
            f"saved {path}."
        )
        previous = self._previous.get(signum)
        self._restore()
        close_wandb_run(trainer, exit_code=128 + int(signum))
        if callable(previous):  # submitit: checkpoint the Hydra job, requeue it, exit
            previous(signum, None)
        # no one to requeue: stop now (letting Lightning finish the epoch would validate and overwrite last.ckpt
        # with an "epoch done" checkpoint, and the resumed run would skip the rest of this epoch)
        say(f"Stopping. Resume with ckpt_path={Path(path).parent.parent} (or re-run into the same run folder).")
        raise SystemExit(128 + int(signum))  # what a process ended by that signal returns: it did not finish

    @staticmethod
    def checkpoint_path(trainer) -> str:
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and ckpt.dirpath:
            return str(Path(ckpt.dirpath) / f"{ckpt.CHECKPOINT_NAME_LAST}{ckpt.FILE_EXTENSION}")
        return str(Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt")


def close_wandb_run(trainer, exit_code: int) -> None:
    """Mark this process's W&B run as preempted and finish it, so its offline log holds everything logged so far.
    Why now: submitit's requeue makes SLURM end every process of the job (W&B's service among them, with SIGTERM)
    right away, before an exit handler could flush the log; measured on the local one-node cluster, a job
    preempted two seconds after its start left an empty log for that part of the run. The requeued job resumes the
    same W&B run (same id, ``resume: allow``), so the run goes on where this part ends."""
    from lightning.pytorch.loggers import WandbLogger

    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        run = getattr(logger, "_experiment", None) if isinstance(logger, WandbLogger) else None
        if run is None:
            continue
        try:
            run.mark_preempting()
            run.finish(exit_code=exit_code)
        except Exception as e:  # noqa: BLE001 - the checkpoint is saved; losing the log's tail is not fatal
            say(f"W&B: could not close the run before the requeue ({type(e).__name__}: {e}).")


@contextmanager
def children_ignore_preemption():
    """Processes started (fork+exec) inside this block ignore the preemption signal: SLURM sends it to every
    process of the job step, and a helper process such as W&B's service would otherwise die of it (the default
    action of USR2 is to terminate) and take the run's logging down with it. The disposition SIG_IGN survives exec;
    the main process's own handler is restored on exit."""
    sig = preemption_signal()
    try:
        previous = signal.signal(sig, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to protect
        yield
        return
    try:
        yield
    finally:
        signal.signal(sig, previous)
