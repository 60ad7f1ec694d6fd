"""Where a run folder keeps its diagnostics: ``<run>/diagnostics/<key>/step<step>.<ext>``, one file per logged
step. The image sink (:class:`zfnet_exp.viz.ImageSink`) writes them by this rule and the readers of a run folder
(:class:`zfnet_exp.runs.Run`, the side-by-side comparison of a sweep) find them by the same one."""

from __future__ import annotations

import re
from pathlib import Path


def key_path(key: str) -> str:
    """A logged key (``diag/conv1/top9``) as a relative path: each ``/``-separated part with anything but letters,
    digits and ``_.-`` replaced by ``_``."""
    return "/".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", part) for part in key.split("/") if part)


def key_folder(run_dir: str | Path, key: str) -> Path:
    """The folder of a logged key's files."""
    return Path(run_dir, "diagnostics", key_path(key))


def step_file(run_dir: str | Path, key: str, step: int, suffix: str) -> Path:
    """The file a key logged at ``step`` was written to (``suffix``: ``.png``, ``.csv``, ``.json``)."""
    return key_folder(run_dir, key) / f"step{int(step):07d}{suffix}"
