"""The one place that unpickles a file: checkpoints, published weight files and caches are data, never code.

``torch.load(weights_only=True)`` rebuilds tensors, containers and primitive values only; a pickle that names any
other global (``os.system``, a class with a hostile ``__setstate__``) is refused before anything runs. Every file
this project writes (Lightning checkpoints, the data statistics cache, the transfer feature cache) holds only such
values, so the allow-list beyond torch's own (:data:`PROJECT_TYPES`) is empty today: a type added to a checkpoint
later goes there, by name, and nowhere else.

Why here and not in :mod:`zfnet_exp.runs`: the data statistics cache (``data/``) and external weight files
(``models/``) are read below the layer that knows run folders, and one reader for all keeps one rule.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError

# Globals the project itself writes into its files beyond torch's default allow-list (tensors, OrderedDict, ...).
PROJECT_TYPES: list[Any] = []

_REFUSED = re.compile(r"GLOBAL ([\w.]+)")  # torch's words differ by case: "unsupported GLOBAL posix.system whose ..."


class UnsafeFileError(UserError):
    """A file holds a type that would run code when unpickled; it was refused, nothing of it ran."""


class NotATorchFileError(UserError):
    """A file is empty, truncated or not written by ``torch.save`` at all."""


def load_torch_file(path: str | Path, expected: str, mmap: bool = False) -> Any:
    """Read ``path`` (written by ``torch.save``) with ``weights_only=True`` and the project's allow-list, on the CPU.

    ``expected`` says what the caller wanted in the error paragraphs ("a checkpoint written by train.py", ...).
    ``mmap=True`` maps the tensors instead of reading them (a 224-px ZFNet checkpoint is ~750 MB and most readers
    touch a few records). Raises :class:`UnsafeFileError` naming the refused type, or :class:`NotATorchFileError`.
    """
    path = Path(path)
    is_zip = zipfile.is_zipfile(path)
    try:
        with torch.serialization.safe_globals(PROJECT_TYPES):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and is_zip)
    except pickle.UnpicklingError as e:
        found = _REFUSED.search(str(e))
        if found:
            refused = found.group(1)
            raise UnsafeFileError(
                f"{path} was refused: it holds the type {refused}, which is not one this project writes, and "
                f"unpickling it could run code from the file (nothing of it was run). Files are read as data only; "
                f"expected {expected}. Use a file this project wrote, or, if you trust its author, convert it "
                f"yourself to a plain state dict (torch.save(model.state_dict(), ...))."
            ) from None
        raise _not_a_torch_file(path, expected, e) from None
    except (EOFError, RuntimeError, ValueError, OSError, AttributeError, ImportError, IndexError, KeyError) as e:
        raise _not_a_torch_file(path, expected, e) from None


def _not_a_torch_file(path: Path, expected: str, error: BaseException) -> NotATorchFileError:
    size = path.stat().st_size if path.exists() else 0
    what = "is empty" if size == 0 else f"is not a complete file written by torch.save ({size} bytes)"
    reason = _gist(error)
    return NotATorchFileError(
        f"{path} {what}: torch could not read it ({reason[:160]}). Expected {expected}. Check the path, or "
        f"copy the file again if a transfer or a full disk cut it short."
    )


def _gist(error: BaseException) -> str:
    """The line of torch's message that says what went wrong (not its advice to retry with the unsafe loader)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    noise = ("Weights only load failed", "Check the documentation", "Please file an issue")
    lines = [ln for ln in lines if not ln.startswith(noise)] or [type(error).__name__]
    return lines[-1].removeprefix("WeightsUnpickler error:").strip() or type(error).__name__
