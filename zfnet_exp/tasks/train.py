"""The training task: build datamodule, model, callbacks, loggers and trainer from the config, fit, report.

``train(cfg)`` is what ``train.py`` (Hydra entry point) and the tests call. Every config value is checked
before anything is built (:func:`zfnet_exp.schemas.validate_config`), and every configured layer name against
the model's structure (built on the meta device: no memory, no data needed), so a wrong value fails at start,
not after an epoch.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from ..callbacks.epoch_timer import EpochTimer
from ..callbacks.plain_progress import PlainProgress
from ..callbacks.preemption import SaveOnPreemption, children_ignore_preemption, cluster_plugins
from ..callbacks.reproducible import ResumeDataOrder, StepSeed
from ..callbacks.skipped_files import SkippedFilesMonitor
from ..errors import ConfigError, UserError
from ..runs import Checkpoint, read_checkpoint, resume_checkpoint
from ..schemas import check_layer_names, validate_config
from ..utils.atomic_checkpoint import AtomicCheckpointIO
from ..utils.epoch_csv import EpochCSVLogger
from ..utils.instantiators import instantiate_group
from ..utils.launch import check_job_resources
from ..utils.run_lock import hold_run_folder
from ..utils.skips import forget_skips

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and return the final scalar metrics (``cfg.optimized_metric`` among them, for Hydra sweepers)."""
    started = time.time()  # metrics.csv's time/elapsed_s counts from here (dataset preparation included)
    validate_config(cfg)
    forget_skips()  # "skipped layers" lines: once per run, also when a multirun's jobs share the process
    try:  # the model's structure only (no memory, no init): wrong layer names fail before any data is read
        with torch.device("meta"):
            meta_model = instantiate(cfg.model, num_classes=cfg.model.get("num_classes") or 2).model
    except Exception:  # noqa: BLE001 - an init that needs real values (torchvision VGG): checked once built
        meta_model = None
    if meta_model is not None:
        check_layer_names(cfg, meta_model)
    run_dir = Path(cfg.paths.output_dir)
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True)
    check_job_resources(cfg.trainer)
    with hold_run_folder(run_dir):  # a second run into this folder (a re-launched sweep) refuses here
        return _fit(cfg, run_dir, meta_model, started)


def _fit(cfg: DictConfig, run_dir: Path, meta_model, started: float) -> dict[str, float]:
    """Resume or start, build, fit and report, holding the run folder."""
    # the checkpoint is read (safely) and checked now: a file that is not one of ours fails before any data is read
    if cfg.get("ckpt_path"):
        resume = read_checkpoint(cfg.ckpt_path, prefer="last", key="ckpt_path")
    else:
        resume = resume_checkpoint(run_dir, cfg) if cfg.get("auto_resume", True) else None
        if resume == "finished":
            return {}

    datamodule = instantiate(cfg.data)
    if getattr(datamodule, "skip_log", None) is not None:  # where a stop for too many unreadable files lists them
        datamodule.skip_log.report = run_dir / SkippedFilesMonitor.FILENAME
    datamodule.prepare_data()
    datamodule.setup("fit")  # a missing or malformed dataset fails here, before a model is built
    num_classes = cfg.model.get("num_classes") or datamodule.num_classes
    if cfg.get("seed") is not None:  # again: the model's init must not depend on whether the data was cached
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    model = instantiate(cfg.model, num_classes=num_classes)
    if meta_model is None:
        check_layer_names(cfg, model.model)
    if resume is not None:
        check_same_network(resume, model, cfg)
    ckpt_path = str(resume.path) if resume is not None else None

    callbacks = instantiate_group(cfg.get("callbacks"), "callbacks")
    callbacks.append(SkippedFilesMonitor())  # always on: unreadable files are counted, whatever the dashboards
    callbacks += _run_control_callbacks(cfg)
    loggers: list[Logger] = instantiate_group(cfg.get("logger"), "logger")
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=[*loggers, EpochCSVLogger(run_dir, started=started)],
        plugins=[*cluster_plugins(), AtomicCheckpointIO({str(resume.path): resume.raw} if resume else None)],
    )
    _announce(run_dir, loggers)
    with children_ignore_preemption():  # W&B's service process must survive the scheduler's signal
        _log_hyperparameters(cfg, model, loggers)

    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)

    metrics = {
        k: float(v) for k, v in trainer.callback_metrics.items() if isinstance(v, torch.Tensor) and v.numel() == 1
    }
    _summary(trainer, run_dir, loggers, metrics)
    name = cfg.get("optimized_metric")
    if name and name not in metrics:
        raise ConfigError(
            f"optimized_metric={name!r} was not logged by this run; choose one of {', '.join(sorted(metrics))}."
        )
    return metrics


def check_same_network(ckpt: Checkpoint, model: L.LightningModule, cfg: DictConfig) -> None:
    """A resumed checkpoint must hold this run's network: a mismatch is named (architectures, first differing
    layers) before training starts, instead of Lightning's size-mismatch traceback mid-restore."""
    problems = ckpt.mismatches(model)
    if not problems:
        return
    ours = model.hparams.get("name") if model.hparams.get("library", "zfnet_exp") == "zfnet_exp" else None
    ours = ours or f"{model.hparams.get('library')}:{model.hparams.get('name')}"
    choice = ckpt.architecture if ckpt.hparams.get("library", "zfnet_exp") == "zfnet_exp" else "<its model>"
    raise UserError(
        f"ckpt_path={ckpt.path} holds a {ckpt.architecture} network ({ckpt.hparams.get('num_classes')} classes, "
        f"input {ckpt.hparams.get('input_size')} px), but this run builds {ours} "
        f"({model.hparams.get('num_classes')} classes, input {model.hparams.get('input_size')} px): "
        f"{'; '.join(problems)}. To resume that run, pass its own model (model={choice} and the same model.* "
        f"overrides and data); to start a new run from its weights instead, pass model.checkpoint=<weights file> "
        f"without ckpt_path."
    )


def optimized_metric(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value a Hydra sweeper optimizes (lightning-hydra-template's ``optimized_metric``), or None."""
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name and metrics else None


def _run_control_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """Always on: save-then-requeue on the scheduler's signal; per-step reseeding when the seed is fixed (exact
    resume); plain progress lines where stdout is a file; epoch wall time and img/s in the metrics."""
    out: list[L.Callback] = [SaveOnPreemption(), ResumeDataOrder(), EpochTimer()]
    if cfg.get("seed") is not None:
        out.append(StepSeed(int(cfg.seed)))
    progress = cfg.get("progress") or {}
    plain = progress.get("plain", "auto")
    bar_off = cfg.get("trainer", {}).get("enable_progress_bar") is False  # Lightning refuses both at once
    if not bar_off and (plain is True or (plain == "auto" and not sys.stdout.isatty())):
        out.append(PlainProgress(every_n_steps=int(progress.get("every_n_steps", 50))))
    return out


@rank_zero_only
def _announce(run_dir: Path, loggers: list[Logger]) -> None:
    print(f"Run folder: {run_dir}", flush=True)
    for lg in loggers:
        if isinstance(lg, WandbLogger) and lg._offline:
            print("W&B: no credentials configured, logging offline (upload later with `wandb sync`).", flush=True)


@rank_zero_only
def _log_hyperparameters(cfg: DictConfig, model: L.LightningModule, loggers: list[Logger]) -> None:
    params = {
        "params/total": sum(p.numel() for p in model.parameters()),
        "params/trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    hparams = {**OmegaConf.to_container(cfg, resolve=True), **params}
    hparams.pop("hydra", None)
    for lg in loggers:
        lg.log_hyperparams(hparams)


@rank_zero_only
def _summary(trainer: L.Trainer, run_dir: Path, loggers: list[Logger], metrics: dict[str, float]) -> None:
    ckpt = trainer.checkpoint_callback
    lines = ["", "Done.", f"  run folder : {run_dir}"]
    if ckpt is not None and ckpt.dirpath:
        best = (
            f"{Path(ckpt.best_model_path).name}, {ckpt.monitor}={float(ckpt.best_model_score):.4f}"
            if ckpt.best_model_path and ckpt.best_model_score is not None
            else "-"
        )
        lines.append(f"  checkpoints: {Path(ckpt.dirpath)} (best: {best}; last: last.ckpt)")
    lines.append(f"  metrics    : {run_dir / 'metrics.csv'} (one row per epoch)")
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            where = Path(lg.experiment.dir).parent if lg.experiment else run_dir / "wandb"
            lines.append(f"  W&B        : {where}" + (f"  (upload: wandb sync {where})" if lg._offline else ""))
        elif getattr(lg, "log_dir", None):
            lines.append(f"  {type(lg).__name__.replace('Logger', '').lower():<11}: {lg.log_dir}")
    for key in ("val/acc_top1", "val/acc_top5"):
        if key in metrics:
            lines.append(f"  {key:<11}: {metrics[key]:.4f}")
    if metrics.get("data/skipped_files"):
        lines.append(
            f"  skipped    : {int(metrics['data/skipped_files'])} unreadable image file(s), replaced in their batches "
            f"(listed in {run_dir / 'skipped_files.txt'})"
        )
    print("\n".join(lines), flush=True)
