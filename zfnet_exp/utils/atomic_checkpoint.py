"""Checkpoint files written atomically: a kill at any moment (SIGKILL, node failure, a requeue) leaves either the
previous complete file or the new complete file, never a half-written ``last.ckpt`` that a requeued job would
then fail to load (or, worse, load stale data from). Reading goes through the project's one safe reader
(:func:`zfnet_exp.utils.torch_files.load_torch_file`), so a resume obeys the same rule as every other task.

A write that fails (a full disk, a quota, an I/O error) leaves the previous file as it was and stops the run with
one paragraph (:class:`CheckpointWriteError`, a user error: exit code 2) saying which file, why, that the previous
one is intact, and how much room is left, instead of Lightning's traceback."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..errors import UserError
from .torch_files import load_torch_file


class CheckpointWriteError(UserError):
    """A checkpoint file could not be written (the previous one is untouched)."""

    def __init__(self, path: Path, error: OSError, had_previous: bool):
        reason = error.strerror or str(error)
        code = errno.errorcode.get(error.errno, "") if error.errno else ""
        try:
            free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free there now"
        except OSError:
            free = "free space unknown"
        kept = (
            f"the previous {path.name} is intact (the partial file was removed)"
            if had_previous
            else "no earlier version of it existed (the partial file was removed)"
        )
        super().__init__(
            f"Could not write the checkpoint {path}: {reason}{f' ({code})' if code else ''}. The run stopped; {kept}. "
            f"Make room on the disk holding {path.parent} ({free}) or write the run elsewhere (hydra.run.dir=...), "
            f"then run the same command again: it resumes from checkpoints/last.ckpt."
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, but each file is written to ``.<name>.tmp-<pid>`` beside its target, flushed to
    disk and then renamed over it (``os.replace`` is atomic within one filesystem). Remote paths (s3://...) are
    left to the parent, whose object stores write whole objects anyway.

    ``preloaded``: a checkpoint the task already read and checked (``{path: raw dict}``), handed to Lightning's
    restore instead of reading the file a second time."""

    def __init__(self, preloaded: dict[str, dict[str, Any]] | None = None):
        super().__init__()
        self._preloaded = {str(Path(k).resolve()): v for k, v in (preloaded or {}).items()}

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        protocol = get_filesystem(path).protocol
        if "file" not in (protocol if isinstance(protocol, (tuple, list)) else (protocol,)):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        raw = self._preloaded.pop(str(Path(path).resolve()), None)
        return raw if raw is not None else load_torch_file(path, "a checkpoint written by train.py")

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        protocol = get_filesystem(path).protocol
        if "file" not in (protocol if isinstance(protocol, (tuple, list)) else (protocol,)):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        had_previous = path.is_file()
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            raise CheckpointWriteError(path, e, had_previous) from None
        finally:
            tmp.unlink(missing_ok=True)
