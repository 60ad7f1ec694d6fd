"""Unreadable data files in the metrics and the run folder: ``data/skipped_files`` each epoch and
``<run folder>/skipped_files.txt`` (``path<TAB>reason``), so a run that skipped files says so where people look.

The datamodule's skip log already merges its DataLoader workers (``zfnet_exp.data.folder.SkipLog``); under DDP
each rank only sees the files of its own shards, so the sets are gathered (a collective on every rank, at the
same hook) and the logged count is the number of distinct files over all ranks.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback


class SkippedFilesMonitor(Callback):
    FILENAME = "skipped_files.txt"

    def __init__(self, filename: str = FILENAME):
        self.filename = filename

    @staticmethod
    def skipped(trainer: L.Trainer) -> dict[str, str]:
        """``{path: reason}`` over every rank (call on every rank)."""
        entries = dict(getattr(trainer.datamodule, "skipped_files", None) or {})
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            gathered: list[dict[str, str] | None] = [None] * trainer.world_size
            dist.all_gather_object(gathered, entries)
            for part in gathered:
                entries.update(part or {})
        return entries

    def _report(self, trainer: L.Trainer, pl_module: L.LightningModule, log: bool) -> None:
        entries = self.skipped(trainer)
        if log:
            pl_module.log("data/skipped_files", float(len(entries)), on_epoch=True, sync_dist=False)
        if entries and trainer.is_global_zero and trainer.default_root_dir:
            path = Path(trainer.default_root_dir) / self.filename
            path.write_text("".join(f"{p}\t{r}\n" for p, r in sorted(entries.items())))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, pl_module, log=True)
