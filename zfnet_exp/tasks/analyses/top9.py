"""Offline Fig. 2: ``python analyze.py ckpt=<ckpt or run folder> analysis=top9``.

Mines the top-k of the configured layers over ``images`` (default: the checkpoint's val split) with
:func:`mine_topk` and draws them with :mod:`zfnet_exp.figures.fig2`, as the top9 training callback does
(``diag/<layer>/top9`` PNG + JSON). ``analysis.sanity=true`` adds the Adebayo et al. cascading
randomization check on each layer's top-1 images of the drawn maps: a JSON of the per-step similarity and a
figure (rows = maps, columns = steps: original, then cumulatively re-initialized from the top down), under
``diag/<layer>/sanity``. A deconvnet that still draws the same pictures with random weights is showing
the image, not the network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...data.normalize import denormalizer
from ...diagnostics.layers import conv_layer_names
from ...diagnostics.topk import mine_topk
from ...figures import emit, fig2
from ...figures.sanity import sanity_figure
from ...utils.options import at_least, maps_option, one_of, option_rules

if TYPE_CHECKING:
    from ..analyze import AnalysisContext


@option_rules(
    k=at_least(1), maps=maps_option, maps_per_row=at_least(1), step=at_least(0), similarity=one_of(("ssim", "spearman"))
)
def run(
    ctx: AnalysisContext,
    *,
    layers: list[str] | None = None,
    k: int = 9,
    maps: int | str | list[int] = 8,
    seed: int = 0,
    maps_per_row: int = 3,
    step: int = 0,
    sanity: bool = False,
    similarity: str = "ssim",
) -> dict[str, Any]:
    """Top-``k`` grids of ``layers`` (None: every conv layer); ``maps`` as in the top9 callback; ``sanity``
    adds the cascading randomization check with ``similarity`` (ssim | spearman)."""
    if ctx.model is None or ctx.dataset is None:
        raise ValueError("analysis=top9 needs ckpt=<checkpoint> and images=<split or folder>")
    layers = layers or conv_layer_names(ctx.model)
    topk = mine_topk(
        ctx.model,
        ctx.dataset,
        layers,
        k=k,
        batch_size=ctx.batch_size,
        num_workers=ctx.num_workers,
        device=ctx.device,
    )
    denorm = denormalizer(ctx.data)
    out: dict[str, Any] = {}
    for panels, fig in fig2.figures(
        ctx.model,
        ctx.dataset,
        topk,
        layers,
        maps=maps,
        seed=seed,
        device=ctx.device,
        denorm=denorm,
        classes=ctx.data.get("classes"),
        images="images",
        when=f"checkpoint {ctx.checkpoint}",
        maps_per_row=maps_per_row,
        checkpoint=str(ctx.checkpoint),
    ):
        emit(ctx.sink, fig, step)
        out[panels.layer] = {"maps": panels.maps}
        check = sanity_figure(ctx.model, ctx.dataset, panels, denorm, similarity, seed, ctx.device) if sanity else None
        if check is not None:
            emit(ctx.sink, check, step)
            out[panels.layer]["sanity"] = [(s["step"], s["score"]) for s in check.payload["steps"]]
    return out
