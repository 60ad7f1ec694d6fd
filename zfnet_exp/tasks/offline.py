"""What the offline tasks (analyze, eval, transfer) share: their loggers' life cycle and the Lightning ``Trainer``
that runs eval's and transfer's loops.

Loggers: built from the task's ``logger`` group, handed the task's resolved config (plus what the task adds, e.g.
the checkpoint it read) as hyper-parameters, and always finalized with the task's status, "failed" when it raised,
so what was logged so far is flushed, not lost; an open W&B run is closed so the jobs of a multirun never share one.

Trainer: built like ``train.py``'s (the cluster environment under SLURM, Lightning's progress display or plain
lines in a log file), on the task's one ``device``, without checkpoints or loggers of its own (the task writes
its tables through its loggers itself).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from ..callbacks.plain_progress import progress_callbacks
from ..callbacks.preemption import cluster_plugins
from ..utils.devices import trainer_device
from ..utils.instantiators import instantiate_group
from .runner import finish_wandb


def task_hparams(cfg: DictConfig, **extra: Any) -> dict[str, Any]:
    """The task's config, resolved, without Hydra's own node, and ``extra``: what its loggers record."""
    hparams = OmegaConf.to_container(cfg, resolve=True)
    hparams.pop("hydra", None)
    return {**hparams, **extra}


@contextmanager
def task_loggers(cfg: DictConfig, **extra: Any) -> Iterator[list[Logger]]:
    """The loggers of ``cfg.logger`` with :func:`task_hparams` logged, finalized on exit ("success" only when the
    block finished), the W&B run finished."""
    loggers = instantiate_group(cfg.get("logger"), "logger")
    status = "failed"
    try:
        if loggers:
            hparams = task_hparams(cfg, **extra)
            for lg in loggers:
                lg.log_hyperparams(hparams)
        yield loggers
        status = "success"
    finally:
        for lg in loggers:
            lg.finalize(status)
        finish_wandb()


def offline_trainer(device: str, out_dir: str | Path, progress: bool = True, **kwargs: Any) -> L.Trainer:
    """A Trainer on ``device`` (``auto | cpu | cuda[:i] | mps``) for a test, predict or short fit loop; ``kwargs``
    go to the Trainer (``max_epochs``, ``precision``, ...)."""
    return L.Trainer(
        **trainer_device(device),
        default_root_dir=str(out_dir),
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        callbacks=progress_callbacks(progress),
        plugins=cluster_plugins(),
        **kwargs,
    )
