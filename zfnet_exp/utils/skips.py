"""One line, once, when a diagnostic cannot apply to some layers of a model (e.g. the ZF deconvnet behind a
residual add): callbacks and analyses say so and skip those layers instead of failing mid-training or silently
computing something else."""

from __future__ import annotations

from collections.abc import Mapping

from lightning.pytorch.utilities import rank_zero_info

_said: set[tuple[str, tuple[str, ...]]] = set()


def say_skipped(what: str, skipped: Mapping[str, Exception | str]) -> None:
    """``<what>: skipped N layer(s) a, b, ... (<first reason>)`` on rank 0, once per (what, layers)."""
    if not skipped:
        return
    layers = tuple(skipped)
    if (what, layers) in _said:
        return
    _said.add((what, layers))
    names = ", ".join(layers[:4]) + (f", ... ({len(layers)} in all)" if len(layers) > 4 else "")
    reason = str(next(iter(skipped.values()))).splitlines()[0]
    rank_zero_info(f"{what}: skipped {names} ({reason})")


def forget_skips() -> None:
    """Start a new run: every skip is said again once (a multirun's jobs may share one process)."""
    _said.clear()
