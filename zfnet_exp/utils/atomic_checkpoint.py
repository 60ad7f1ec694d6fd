"""Checkpoint files written atomically: a kill at any moment (SIGKILL, node failure, a requeue) leaves either the
previous complete file or the new complete file, never a half-written ``last.ckpt`` that a requeued job would
then fail to load (or, worse, load stale data from)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, but each file is written to ``.<name>.tmp-<pid>`` beside its target, flushed to
    disk and then renamed over it (``os.replace`` is atomic within one filesystem). Remote paths (s3://...) are
    left to the parent, whose object stores write whole objects anyway."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        protocol = get_filesystem(path).protocol
        if "file" not in (protocol if isinstance(protocol, (tuple, list)) else (protocol,)):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
