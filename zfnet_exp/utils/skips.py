"""One line, once, when a diagnostic cannot apply to a model (e.g. the ZF deconvnet on a layer behind a
residual add): callbacks and analyses say so and skip that part instead of failing mid-training or
silently computing something else."""

from __future__ import annotations

from lightning.pytorch.utilities import rank_zero_info

_said: set[tuple[str, str]] = set()


def say_skipped(what: str, reason: Exception | str) -> None:
    """Print ``<what>: skipped (<reason>)`` on rank 0, the first time this (what, reason) pair comes up."""
    key = (what, str(reason))
    if key not in _said:
        _said.add(key)
        rank_zero_info(f"{what}: skipped ({str(reason).splitlines()[0]})")
