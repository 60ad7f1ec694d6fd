"""``metrics.csv`` in every run folder, whatever loggers are configured: one row per epoch with every
epoch-level scalar logged (train and val metrics, learning rate), like timm's ``summary.csv``.

It is a Lightning ``Logger`` rather than a callback so it sees every metric, including those logged in the
module's own epoch-end hooks (which run after the callbacks' hooks). The file is rewritten on each update,
so it is complete at any moment, also when a run is killed.

Each row also gets ``time/elapsed_s``: wall-clock seconds from ``started`` (the training task passes the moment
it began, so dataset preparation counts) to the epoch's last logged metric, added to the previous session's
value when a run resumes in the same folder. A run's duration is then part of its record, not a stopwatch's.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from .tables import write_csv


class EpochCSVLogger(Logger):
    ELAPSED = "time/elapsed_s"

    def __init__(self, save_dir: str | Path, filename: str = "metrics.csv", started: float | None = None):
        super().__init__()
        self._path = Path(save_dir) / filename
        self._rows: dict[int, dict[str, Any]] = {}
        self._latest_lr: dict[str, float] = {}  # LearningRateMonitor logs without an epoch key
        self._started = time.time() if started is None else started
        self._before = 0.0  # seconds of earlier sessions of this run (resumed in the same folder)
        if self._path.is_file():  # resuming in the same folder: keep earlier epochs
            with self._path.open(newline="") as f:
                for row in csv.DictReader(f):
                    self._rows[int(float(row["epoch"]))] = dict(row)
                    if row.get(self.ELAPSED):
                        self._before = max(self._before, float(row[self.ELAPSED]))

    @property
    def name(self) -> str:
        return "metrics"

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self._path.parent)

    @property
    def path(self) -> Path:
        return self._path

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if "epoch" not in metrics:
            self._latest_lr.update({k: float(v) for k, v in metrics.items() if k.startswith("lr-")})
            return
        epoch = int(metrics["epoch"])
        row = self._rows.setdefault(epoch, {"epoch": epoch})
        for key, value in self._latest_lr.items():
            row.setdefault(key, value)
        row["step"] = step
        for key, value in metrics.items():
            if key != "epoch" and not key.endswith("_step"):
                row[key.removesuffix("_epoch")] = round(float(value), 6)
        row[self.ELAPSED] = round(self._before + time.time() - self._started, 1)
        self._write()

    def _write(self) -> None:
        write_csv([self._rows[e] for e in sorted(self._rows)], self._path)
