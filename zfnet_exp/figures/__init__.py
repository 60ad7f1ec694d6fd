"""The paper's figures, one module each: ``fig2`` (top-9 projections), ``fig4`` (feature evolution), ``fig6``
(first-layer filters; the 7x7/s2 vs 11x11/s4 comparison), ``fig7`` (occlusion), ``fig9`` (transfer accuracy vs
training images per class).

Why a layer of its own: each figure used to be assembled (which maps, which projections, which labels, title,
JSON) separately by its training callback, its offline analysis and the experiment summaries, and the copies
drifted. Here each figure has one function that computes it and one that draws it, returning a
:class:`~zfnet_exp.figures.result.FigureResult` (labelled figure + JSON-able payload + sink key), and one
:func:`~zfnet_exp.figures.result.emit` that writes it through the sink. Callbacks keep only *when* and *which
data*, analyses only their options.

Layering: imported by ``callbacks/``, ``tasks/`` and ``experiments/``; imports ``diagnostics/``, ``viz/``,
``models/``, ``data/`` and ``utils/``, never a higher layer.
"""

from .result import FigureResult, emit

__all__ = ["FigureResult", "emit"]
