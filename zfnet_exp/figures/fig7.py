"""Paper Fig. 7: occlusion sensitivity of one image.

One computation (:func:`compute`: the occlusion grids for the true class and, optionally, the deconvnet
projection of the tracked map's strongest unit) and one drawing (:func:`draw`: the five-panel figure and the
grids as JSON) for both callers: the ``OcclusionSensitivity`` training callback (fixed validation probes) and
``analysis=occlusion`` (evenly spaced images of a checkpoint's split).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from ..diagnostics.deconvnet import DeconvnetNotApplicable
from ..diagnostics.geometry import NoReceptiveField
from ..diagnostics.occlusion import OcclusionResult, occlusion_sensitivity
from ..diagnostics.projections import strongest_unit_projection
from ..utils.skips import say_skipped
from ..viz.occlusion_figure import occlusion_figure, result_payload
from .result import FigureResult


@dataclass
class Occlusion:
    """What Fig. 7 shows for one image: the occlusion ``result`` and the raw deconvnet ``projection``
    ``[3, H, W]`` of panel (c) (None when not asked for or not applicable)."""

    result: OcclusionResult
    projection: Tensor | None


def compute(
    model: nn.Module,
    image: Tensor,
    target: int,
    *,
    patch: int,
    stride: int,
    fill: float,
    layer: str | None,
    batch_size: int,
    projection: bool = True,
) -> Occlusion:
    """Occlude normalized ``image`` ``[3, H, W]`` (on the model's device) with a ``patch`` square filled with
    ``fill`` every ``stride`` pixels, tracking P(``target``) and ``layer``'s strongest map
    (:func:`~zfnet_exp.diagnostics.occlusion.occlusion_sensitivity`); with ``projection``, that map's
    strongest unit projected by the deconvnet (skipped, once with the reason, where the deconvnet does not
    apply)."""
    res = occlusion_sensitivity(model, image, int(target), patch, stride, fill, layer, batch_size)
    proj = None
    if projection and res.channel is not None:
        try:
            proj = strongest_unit_projection(model, image, res.layer, res.channel)
        except (DeconvnetNotApplicable, NoReceptiveField) as err:
            say_skipped("occlusion deconvnet panel", {res.layer: err})
    return Occlusion(res, proj)


def draw(
    occ: Occlusion, shown: Tensor, classes: Sequence[str] | None, key: str, title: str, **extra: Any
) -> FigureResult:
    """The five-panel Fig. 7 (:func:`~zfnet_exp.viz.occlusion_figure.occlusion_figure`) of ``shown`` (the
    image de-normalized to [0, 1]) under ``key``, captioned with the true class and its clean probability;
    payload: the grids and settings (:func:`~zfnet_exp.viz.occlusion_figure.result_payload`) plus ``extra``."""
    res = occ.result
    name = classes[res.target] if classes else str(res.target)
    return FigureResult(
        key=key,
        figure=occlusion_figure(shown, res, classes, occ.projection, title=title),
        payload=result_payload(res, classes, **extra),
        caption=f"{name}: p={res.clean_prob:.2f}",
    )


__all__ = ["Occlusion", "compute", "draw"]
