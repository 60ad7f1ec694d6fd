"""``logger`` group: the logger arguments our configs set (Lightning checks the rest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Logger:
    _target_: str = ""
    save_dir: str | None = None
    name: str | None = None
    version: Any = None
    prefix: str = ""


@dataclass
class WandbLogger(Logger):
    project: str | None = None
    id: str | None = None
    offline: bool = False
    log_model: Any = False
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    job_type: str | None = None


@dataclass
class TensorBoardLogger(Logger):
    default_hp_metric: bool = True


SUBSET_SCHEMAS = {"WandbLogger": WandbLogger, "TensorBoardLogger": TensorBoardLogger, "CSVLogger": Logger}
