"""What every figure function returns, and the one step that hands it to the sink."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..viz import ImageSink


@dataclass
class FigureResult:
    """One labelled figure and the numbers it is drawn from.

    ``figure`` is anything :func:`zfnet_exp.viz.to_pil` draws (a ``Canvas``, a matplotlib ``Figure``, a PIL
    image); ``payload`` is JSON-able: a dict (written as JSON) or a list of flat rows (written as a table);
    ``key`` is the sink key (``diag/conv2/top9``); ``caption`` the logger's caption."""

    key: str
    figure: Any
    payload: dict | list[dict]
    caption: str = ""


def emit(sink: ImageSink, result: FigureResult, step: int) -> None:
    """Write ``result`` through ``sink`` at ``step``: the PNG, and its payload beside it under the same key
    (JSON for a dict; CSV + logger table for a list of rows)."""
    sink.log_image(result.key, result.figure, step=step, caption=result.caption or None)
    if isinstance(result.payload, list):
        sink.log_table(result.key, result.payload, step=step)
    else:
        sink.log_json(result.key, result.payload, step=step)


__all__ = ["FigureResult", "emit"]
