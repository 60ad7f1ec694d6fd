"""The folders a run writes to, checked before any work: the run folder (``hydra.run.dir``, or
``hydra.sweep.dir`` for ``-m``), the data cache (``paths.data_dir``, ``data.cache_dir``) and the W&B directory
(``logger.wandb.save_dir``). Without this, a run folder under a path whose parent is a file ends in Hydra's raw
traceback before the task even starts, and a read-only data cache fails after the model is built. All problems
are said at once, in one paragraph."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError


def unwritable(path: str | Path) -> str | None:
    """Why a folder cannot be created or written at ``path`` (its first existing ancestor is a file, or is not
    writable), or None when it can."""
    target = Path(path).expanduser().absolute()
    probe = target
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        if probe == target:
            return f"{probe} is a file, not a folder"
        return f"{probe} is a file, so no folder can be created under it"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable{' (a read-only file system?)' if os.access(probe, os.R_OK) else ''}"
    return None


def check_folders(folders: Mapping[str, str | Path | None]) -> None:
    """``{config key: folder}``: one :class:`ConfigError` naming every key whose folder cannot be written."""
    problems = [f"{key}={path} ({why})" for key, path in folders.items() if path and (why := unwritable(path))]
    if problems:
        keys = ", ".join(f"{key}=<folder>" for key, path in folders.items() if path and unwritable(path))
        raise ConfigError(
            f"This run cannot write where it is told to: {'; '.join(problems)}. Nothing was started. Point "
            f"{'these keys' if len(problems) > 1 else 'the key'} at a folder you can write ({keys}), or move the "
            f"file that is in the way."
        )
