"""The progress bar of the loops that are not Lightning's (feature extraction, dataset statistics).

Why: a tqdm bar redraws one line with carriage returns. On a terminal that is what one wants; in a log file
(``python transfer.py > log 2>&1``, a SLURM job's output) it is a single line that grows by a redraw per update,
which ``tail -f`` shows as nothing until the loop ends. So the rule is the one the training task's
:class:`~zfnet_exp.callbacks.plain_progress.PlainProgress` follows: when stdout is a terminal, a redrawn tqdm bar;
otherwise one plain line on stdout (count, rate, ETA) every 30 s, and one at the start and the end.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm.auto import tqdm

PLAIN_INTERVAL_S = 30.0


class _Lines:
    """A stream for tqdm that turns each redraw (``\\r`` + bar) into one complete line on ``stream``."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(
    iterable: Iterable | None = None, *, enabled: bool = True, stream: TextIO | None = None, **kwargs: Any
) -> tqdm:
    """A tqdm bar over ``iterable`` (or ``total=...`` and ``update``), as the module docstring says: redrawn on a
    terminal, plain periodic lines when stdout is a file. ``kwargs`` go to tqdm (``desc``, ``unit``, ``total``,
    ``leave``). ``stream``: where the lines go when stdout is not a terminal (default: stdout)."""
    if sys.stdout.isatty() and stream is None:
        return tqdm(iterable, disable=not enabled, mininterval=0.5, dynamic_ncols=True, **kwargs)
    return tqdm(
        iterable,
        disable=not enabled,
        file=_Lines(stream or sys.stdout),
        mininterval=PLAIN_INTERVAL_S,
        maxinterval=PLAIN_INTERVAL_S,
        ascii=True,
        ncols=100,
        **kwargs,
    )
