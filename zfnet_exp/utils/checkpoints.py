"""Finding and reading checkpoints: one resolver for every task (train resumes, analyze/eval read).

A run folder holds ``checkpoints/last.ckpt`` (written every epoch) and the best checkpoint by the monitored
metric. "Best" means what Lightning's ``ModelCheckpoint`` recorded as ``best_model_path`` in its state (saved
inside every checkpoint it writes), not a guess from file names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import UserError

PREFER = ("best", "last")


def _read(path: Path) -> dict[str, Any]:
    # mmap: only the records that are touched are read (a 224-px ZFNet checkpoint is ~750 MB)
    return torch.load(path, map_location="cpu", weights_only=False, mmap=True)


def recorded_best(last: Path) -> Path | None:
    """The best checkpoint that ``ModelCheckpoint`` recorded in ``last`` (None if it recorded none). A run
    folder that was moved still works: the recorded file is looked up beside ``last`` by name."""
    for key, state in (_read(last).get("callbacks") or {}).items():
        if str(key).startswith("ModelCheckpoint") and state.get("best_model_path"):
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
