"""Everything about a run folder, in one module: its checkpoints ("best" / "last"), reading a checkpoint (safely,
once), the model and data description it holds, the run's composed config and group choices, its overrides and
its per-epoch metrics.

Every task reads runs through here (train's resume, analyze, eval, transfer, collect, the experiment summaries,
the launcher), so a checkpoint is read by one rule: :func:`zfnet_exp.utils.torch_files.load_torch_file`
(``weights_only=True``: a shared checkpoint is data, never code), and is checked to be what the task expects
before anything else happens.

A run folder (``outputs/train/<date>/<time>_<name>/`` or a sweep's job folder) holds ``.hydra/`` (``config.yaml``,
``hydra.yaml``, ``overrides.yaml``), ``checkpoints/last.ckpt`` (every epoch) and the best checkpoint by the
monitored metric, ``metrics.csv`` (one row per epoch) and ``diagnostics/``. "Best" means what Lightning's
``ModelCheckpoint`` recorded as ``best_model_path`` in its state (saved inside every checkpoint it writes), not a
guess from file names.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import Dataset, Subset
from torchvision import transforms as T

from .data.datamodule import data_state
from .data.folder import IndexedImageFolder
from .data.normalize import Normalizer
from .data.transforms import eval_transform
from .errors import UserError
from .utils import resolvers  # noqa: F401  (a run's saved config reads ${default:} and the project's resolvers)
from .utils.diagnostic_files import step_file
from .utils.launch import say
from .utils.tensors import evenly_spaced
from .utils.torch_files import load_torch_file

PREFER = ("best", "last")
# what became of a run, decided from its folder alone (Run.status)
STATUSES = ("finished", "running", "preempted", "failed")
# a run folder without a lock file counts as running while one of its files changed this recently (seconds)
RECENT_S = 600.0
NOT_METRICS = ("epoch", "step")
LOCK_NAMES = (".run.lock", ".lock")  # zfnet_exp.utils.run_lock's (a held POSIX lock), a plain pid file
LIGHTNING_CHECKPOINT = "a checkpoint written by train.py (a Lightning .ckpt: a run folder's checkpoints/*.ckpt)"


@dataclass
class Checkpoint:
    """One checkpoint file, read once. ``raw`` is the dict Lightning saved (tensors memory-mapped)."""

    path: Path
    raw: dict[str, Any] = field(repr=False)

    @property
    def hparams(self) -> dict[str, Any]:
        """The model's constructor arguments (``LitClassifier.hparams``): enough to rebuild it without the config."""
        return dict(self.raw["hyper_parameters"])

    @property
    def data(self) -> dict[str, Any]:
        """What the datamodule saved: normalization record, ``image_size``, ``classes``, ``root``."""
        return data_state(self.raw)

    @property
    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.raw["state_dict"]

    @property
    def epoch(self) -> int:
        """The 0-based epoch the checkpoint was written in (``epoch + 1`` epochs were trained when it closed one)."""
        return int(self.raw.get("epoch", -1))

    @property
    def global_step(self) -> int:
        return int(self.raw.get("global_step", 0))

    @property
    def architecture(self) -> str:
        """The model's name as the user chose it (``zfnet``, ``alexnet``, ``timm:resnet18`` ...), for messages."""
        hp = self.raw.get("hyper_parameters") or {}
        library = hp.get("library", "zfnet_exp")
        name = str(hp.get("name") or "?")
        return name if library == "zfnet_exp" else f"{library}:{name}"

    def lit_module(self) -> nn.Module:
        """The trained :class:`~zfnet_exp.models.LitClassifier` (weights loaded, train mode as Lightning leaves it)."""
        from .models import LitClassifier

        lit = LitClassifier(**self.hparams)
        lit.load_state_dict(self.state_dict)
        return lit

    def model(self, device: torch.device | str = "cpu") -> nn.Module:
        """The trained network alone, in eval mode, on ``device``."""
        return self.lit_module().model.eval().to(device)

    def mismatches(self, module: nn.Module, limit: int = 3) -> list[str]:
        """Up to ``limit`` lines "name: checkpoint shape vs this model's shape" (missing keys on either side count),
        empty when the checkpoint's weights fit ``module`` (a LightningModule: keys as in ``state_dict``)."""
        mine = module.state_dict()
        theirs = self.state_dict
        out = []
        for name, tensor in theirs.items():
            if name not in mine:
                out.append(f"{name}: {tuple(tensor.shape)} in the checkpoint, absent from this model")
            elif tuple(mine[name].shape) != tuple(tensor.shape):
                out.append(f"{name}: {tuple(tensor.shape)} in the checkpoint vs {tuple(mine[name].shape)} here")
            if len(out) >= limit:
                return out
        out += [f"{name}: absent from the checkpoint" for name in mine if name not in theirs]
        return out[:limit]


def read_checkpoint(path: str | Path, prefer: str = "best", key: str = "ckpt") -> Checkpoint:
    """The checkpoint at ``path`` (a file, or a run folder: see :func:`resolve_checkpoint`), read once and checked to
    be one that ``train.py`` wrote (model hyper-parameters and weights in it). Anything else, a crafted pickle,
    random bytes, a truncated file or a bare weights file, is one :class:`UserError` paragraph naming the file."""
    p = resolve_checkpoint(path, prefer=prefer, key=key)
    raw = load_torch_file(p, LIGHTNING_CHECKPOINT, mmap=True)
    if not isinstance(raw, dict) or "state_dict" not in raw or "hyper_parameters" not in raw:
        found = "a bare state dict (weights only)" if _is_state_dict(raw) else f"a {type(raw).__name__}"
        hint = (
            f" To start a run from these weights, pass model.checkpoint={p} to train.py instead."
            if _is_state_dict(raw)
            else ""
        )
        published = _published(raw) if _is_state_dict(raw) else None
        if published is not None:
            found = f"published {published.layout.source} `{published.layout.name}` ImageNet weights"
            hint = (
                f" Convert them once into a checkpoint: python -m zfnet_exp.models.convert {p} --out <folder>, "
                f"then pass {key}=<folder>; or start a training run from them with model.checkpoint={p}."
            )
        raise UserError(
            f"{key}={p} holds {found}, not {LIGHTNING_CHECKPOINT} with its model hyper-parameters and weights. "
            f"Pass {key}=<run folder> or {key}=<run folder>/checkpoints/last.ckpt.{hint}"
        )
    hp = raw["hyper_parameters"]
    if not isinstance(hp, dict) or "name" not in hp:
        raise UserError(
            f"{key}={p} is a Lightning checkpoint, but not one of this project's models (no model name in its "
            f"hyper-parameters). Pass a checkpoint written by train.py."
        )
    return Checkpoint(p, raw)


def _published(state: dict) -> Any:
    """The published network a bare state dict holds (:func:`zfnet_exp.models.pretrained.identify`), else None."""
    from .models.pretrained import identify

    try:
        return identify(state)
    except UserError:
        return None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The network (eval mode, on ``device``) and the data description its checkpoint holds; the file is read once."""
    ckpt = read_checkpoint(path)
    return ckpt.model(device), ckpt.data


def recorded_best(last: Path) -> Path | None:
    """The best checkpoint that ``ModelCheckpoint`` recorded in ``last`` (None if it recorded none). A run
    folder that was moved still works: the recorded file is looked up beside ``last`` by name."""
    raw = load_torch_file(last, LIGHTNING_CHECKPOINT, mmap=True)
    for name, state in ((raw.get("callbacks") or {}) if isinstance(raw, dict) else {}).items():
        if str(name).startswith("ModelCheckpoint") and state.get("best_model_path"):
            best = Path(state["best_model_path"])
            for candidate in (best, last.parent / best.name):
                if candidate.is_file():
                    return candidate
    return None


def resolve_checkpoint(path: str | Path, prefer: str = "best", key: str = "ckpt") -> Path:
    """A checkpoint file as given, or for a run folder: ``prefer="last"`` -> ``checkpoints/last.ckpt`` (what a
    resume needs); ``prefer="best"`` -> the best checkpoint recorded by ``ModelCheckpoint``, else ``last.ckpt``.
    ``key`` names the config key in the error message."""
    if prefer not in PREFER:
        raise ValueError(f"prefer={prefer!r}; choose one of {PREFER}")
    p = Path(path).expanduser()
    if p.is_dir():
        last = p / "checkpoints" / "last.ckpt"
        if not last.is_file() and (p / "last.ckpt").is_file():  # the checkpoints folder itself
            last = p / "last.ckpt"
        p = (recorded_best(last) or last) if prefer == "best" and last.is_file() else last
    if not p.is_file():
        raise UserError(
            f"Checkpoint {path} does not exist. Pass {key}=<checkpoint file> (e.g. <run folder>/checkpoints/"
            f"last.ckpt) or {key}=<run folder> (one that has checkpoints/last.ckpt), e.g. "
            f"{key}=outputs/train/<date>/<time>_zfnet_shapes."
        )
    return p


def evenly_spaced_subset(dataset: Dataset, num_images: int | None) -> Dataset:
    """At most ``num_images`` items, evenly spaced over the (class-sorted) dataset so every class is represented."""
    if num_images is None or int(num_images) >= len(dataset):
        return dataset
    return Subset(dataset, evenly_spaced(len(dataset), int(num_images)))


def build_dataset(data: dict[str, Any], images: str, num_images: int | None = None) -> Dataset:
    """Images fed the way the checkpoint's training run fed its validation: ``images`` is a split of the
    checkpoint's dataset (``train`` / ``val``) or a folder in ImageFolder layout; at most ``num_images`` of them,
    evenly spaced so every class is represented. ``data`` is :attr:`Checkpoint.data`."""
    if not data.get("mean"):
        raise UserError(
            "This checkpoint records no data normalization (it was not saved by LitClassifier "
            "during training); analyses need it to feed images the way training did."
        )
    # items as the network saw them: uint8 eval crop, then the training run's normalization
    transform = T.Compose([eval_transform(int(data["image_size"])), Normalizer.from_record(data)])
    if images in ("train", "val"):
        if not data.get("root"):
            raise UserError(
                f"images={images}: the checkpoint does not record its dataset folder; pass "
                f"images=<folder in ImageFolder layout> instead."
            )
        folder = Path(data["root"]) / images
    else:
        folder = Path(images).expanduser()
    dataset: Dataset = IndexedImageFolder(folder, transform=transform)
    trained = data.get("classes")
    if trained and len(dataset.classes) != len(trained):
        raise UserError(
            f"images={images}: {folder} has {len(dataset.classes)} class folders, but the checkpoint's model was "
            f"trained on {len(trained)} classes; its outputs would not line up with this folder's labels. Pass a "
            f"folder with the same class sub-folders as training (or images=val / images=train)."
        )
    return evenly_spaced_subset(dataset, num_images)


class Run:
    """A training run's folder: what it was composed from, what it wrote, how far it got."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @cached_property
    def config(self) -> DictConfig:
        """The composed job config (``.hydra/config.yaml``, interpolations unresolved)."""
        return OmegaConf.load(self.path / ".hydra" / "config.yaml")

    @cached_property
    def choices(self) -> dict[str, str]:
        """The config-group choices (``.hydra/hydra.yaml``: ``{"model": "zfnet", "data": "shapes", ...}``)."""
        path = self.path / ".hydra" / "hydra.yaml"
        if not path.is_file():
            return {}
        return {k: v for k, v in OmegaConf.load(path).hydra.runtime.choices.items() if v is not None}

    @cached_property
    def overrides(self) -> list[str]:
        """The command-line overrides of this job (``.hydra/overrides.yaml``; a sweep's job gets its grid point)."""
        path = self.path / ".hydra" / "overrides.yaml"
        return [str(o) for o in OmegaConf.load(path)] if path.is_file() else []

    @property
    def metrics(self) -> list[dict[str, str]]:
        """The rows of ``metrics.csv`` (one per epoch, strings as written; read anew: a running job appends)."""
        path = self.path / "metrics.csv"
        if not path.is_file():
            return []
        with path.open(newline="") as f:
            return list(csv.DictReader(f))

    def validated_epochs(self) -> list[dict[str, str]]:
        """The rows of epochs that were validated."""
        return [r for r in self.metrics if r.get("val/err_top1")]

    def dissect_units(self, step: int = 0) -> list[dict[str, str]]:
        """The units table the ``dissect`` callback wrote at ``step`` (step 0: its dissection of the initial
        weights, ``at_init``); empty when there is none."""
        path = step_file(self.path, "dissect/units", step, ".csv")
        if not path.is_file():
            return []
        with path.open(newline="") as f:
            return list(csv.DictReader(f))

    @property
    def epochs_done(self) -> int:
        rows = self.validated_epochs()
        return int(rows[-1]["epoch"]) + 1 if rows else 0

    @property
    def max_epochs(self) -> int | None:
        value = self.config.get("trainer", {}).get("max_epochs")
        return int(value) if value is not None else None

    @property
    def last(self) -> Path | None:
        path = self.path / "checkpoints" / "last.ckpt"
        return path if path.is_file() else None

    @property
    def best(self) -> Path | None:
        """The best checkpoint ``ModelCheckpoint`` recorded, else ``last.ckpt`` (None before the first epoch)."""
        return (recorded_best(self.last) or self.last) if self.last else None

    def checkpoint(self, prefer: str = "best") -> Checkpoint:
        return read_checkpoint(self.path, prefer=prefer)

    def setting(self, key: str) -> Any:
        """The composed config's value at ``key`` (dotted), resolved where it can be outside the run (an
        interpolation of Hydra's runtime, e.g. ``${hydra:...}``, gives None), None when absent."""
        try:
            value = OmegaConf.select(self.config, key, default=None, throw_on_resolution_failure=False)
        except Exception:  # noqa: BLE001 - a custom resolver that is not registered here: unknown
            return None
        return OmegaConf.to_container(value, resolve=False) if isinstance(value, DictConfig) else value

    @property
    def override_map(self) -> dict[str, str]:
        """The overrides as ``{key: value}`` (:func:`override_map`)."""
        return override_map(self.overrides)

    def final_scalars(self) -> dict[str, float]:
        """Every numeric value of the last validated epoch's row of ``metrics.csv`` (``epoch`` and ``step``
        aside), e.g. ``val/err_top1``, ``health/conv1/aliasing``, ``data/skipped_files``, ``time/epoch_s``."""
        rows = self.validated_epochs()
        return _numbers(rows[-1]) if rows else {}

    @property
    def lock(self) -> Path:
        """The run's lock file: ``<run>/.run.lock`` (``zfnet_exp.utils.run_lock``: a POSIX lock held by the training
        process, naming it; removed when the run finishes) or a plain ``<run>/.lock`` naming a pid."""
        for name in LOCK_NAMES:
            if (self.path / name).is_file():
                return self.path / name
        return self.path / LOCK_NAMES[0]

    @property
    def status(self) -> str:
        """``finished`` (all ``trainer.max_epochs`` validated), ``running`` (a live lock file, :attr:`lock`, or
        without one a file the training writes changed within :data:`RECENT_S`), ``preempted`` (``last.ckpt`` was
        saved in the middle of an epoch: the save-on-signal of a preemption or time limit, waiting for its
        requeue) or ``failed`` (stopped before the end otherwise)."""
        return self.state()

    def state(self, ended: bool = False) -> str:
        """:attr:`status`; ``ended=True`` when the caller knows no job of the sweep runs any more (the end of a
        multirun): recent files then do not mean "running"."""
        done, total = self.epochs_done, self.max_epochs
        if total is not None and total >= 0 and done >= total:
            return "finished"
        if not ended and (self._locked() or (not self.lock.exists() and self._recently_active())):
            return "running"
        if self._saved_mid_epoch():
            return "preempted"
        if (total is None or total < 0) and done > 0:
            return "finished"
        return "failed"

    def _locked(self) -> bool:
        """A lock file whose owner is alive. ``.run.lock``: its POSIX lock is held (the kernel drops it when the
        process ends, however it ends; a file left by a crash is not locked). A plain ``.lock``: one that names a
        process of this host that no longer exists is stale (a killed job); one that names none, or another
        host's, is trusted."""
        if not self.lock.is_file():
            return False
        if self.lock.name == LOCK_NAMES[0]:
            return _lock_held(self.lock)
        text = self.lock.read_text(errors="replace").strip()
        try:
            info = json.loads(text) if text.startswith("{") else {}
        except json.JSONDecodeError:
            info = {}
        if not info and text.split() and text.split()[0].isdigit():
            parts = text.split()
            info = {"pid": parts[0], "host": parts[1] if len(parts) > 1 else None}
        pid, host = info.get("pid"), info.get("host") or info.get("hostname")
        if pid is None or (host and host != socket.gethostname()):
            return True
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError):
            return True
        return True

    def _recently_active(self) -> bool:
        """A file that a training process writes changed within :data:`RECENT_S`: its composed config and job log
        (at start), ``metrics.csv`` (each epoch), ``last.ckpt``, the W&B log (continuously). Not the folder's own
        time: adding or removing a lock file changes that."""
        files = [
            self.path / ".hydra" / "config.yaml",
            self.path / "metrics.csv",
            self.path / "checkpoints" / "last.ckpt",
        ]
        files += [*self.path.glob("*.log"), *self.path.glob("wandb/*/*.wandb")]
        newest = max((p.stat().st_mtime for p in files if p.is_file()), default=0.0)
        return time.time() - newest < RECENT_S

    def _saved_mid_epoch(self) -> bool:
        if self.last is None:
            return False
        raw = load_torch_file(self.last, LIGHTNING_CHECKPOINT, mmap=True)
        batch = (raw.get("loops") or {}).get("fit_loop", {}).get("epoch_loop.batch_progress", {})
        return isinstance(batch, dict) and bool(batch) and not batch.get("is_last_batch", True)


def override_map(overrides: Iterable[str]) -> dict[str, str]:
    """Command-line overrides as ``{key: value}``: ``+key`` / ``++key`` as ``key``; a deletion, ``~key`` or
    ``~key=<value>`` (Hydra writes the sweep's ``~key`` as ``~key=null`` in a job's overrides), as ``key: "~"``."""
    out: dict[str, str] = {}
    for item in overrides:
        if item.startswith("~"):
            out[item[1:].split("=", 1)[0]] = "~"
            continue
        key, _, value = item.partition("=")
        out[key.lstrip("+")] = value
    return out


def resume_checkpoint(run_dir: Path, cfg: DictConfig) -> Checkpoint | str | None:
    """``last.ckpt`` of this run folder, read, if there is one (printed), ``"finished"`` when it already holds the end
    of training (printed: nothing to do), else None (a fresh start)."""
    run = Run(run_dir)
    if run.last is None:
        return None
    ckpt = run.checkpoint(prefer="last")
    last = ckpt.path
    epoch, step = max(ckpt.epoch, 0), ckpt.global_step
    batch = ckpt.raw.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress", {})
    epoch_done = bool(batch.get("is_last_batch", False))
    max_epochs = cfg.trainer.get("max_epochs")
    if epoch_done and max_epochs is not None and epoch + 1 >= int(max_epochs):
        say(
            f"{run_dir} already finished (epoch {epoch + 1}/{max_epochs}, step {step}): skipping. Pass "
            f"auto_resume=false (and another hydra.run.dir / hydra.sweep.dir) to train again from scratch."
        )
        return "finished"
    say(f"Resuming from {last} (epoch {epoch + 1}, step {step}) in the same run folder.")
    return ckpt


def is_run(path: Path, started: bool = True) -> bool:
    """A folder a training run wrote: its composed config and (``started``) its per-epoch metrics; with
    ``started=False`` also a job that has not finished its first epoch (or died before)."""
    return (path / ".hydra" / "config.yaml").is_file() and (not started or (path / "metrics.csv").is_file())


def find_runs(paths: Iterable[str | Path], started: bool = True) -> list[Run]:
    """The training runs in ``paths``: each path a run folder or a folder searched for them (a sweep's numbered job
    folders, SLURM's or the local launcher's), in a stable order. ``started=False``: also the jobs that have not
    written ``metrics.csv`` yet (running, or dead before their first epoch ended)."""
    runs: list[Path] = []
    for p in map(Path, paths):
        if is_run(p, started):
            runs.append(p)
        elif p.is_dir():
            found = {c.parent.parent for c in p.rglob(".hydra/config.yaml")}
            runs += sorted((r for r in found if is_run(r, started)), key=_natural)
    return [Run(r) for r in dict.fromkeys(runs)]


def _lock_held(path: Path) -> bool:
    """Whether another process holds the POSIX lock on ``path`` (probed with a shared, non-blocking lockf)."""
    import errno
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        return e.errno in (errno.EACCES, errno.EAGAIN)
    finally:
        os.close(fd)
    return False


def _numbers(row: dict[str, str]) -> dict[str, float]:
    out = {}
    for key, value in row.items():
        if key in NOT_METRICS or key is None or value in (None, ""):
            continue
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def _natural(path: Path) -> tuple:
    """Job folders 0, 1, ..., 10 in number order, not text order."""
    return tuple((0, int(s), "") if s.isdigit() else (1, 0, s) for s in path.parts)
