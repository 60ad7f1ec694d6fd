"""``analysis=occlusion``: the paper's Fig. 7 for a few validation images of a checkpoint.

One figure + one JSON of the grids per probe image (``diagnostics/analysis/occlusion/<probe>/``) and a
summary CSV (``occlusion.csv``: clean probability, the lowest occluded probability and where it happened).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...figures import emit, fig7
from ...utils.options import at_least, option_rules
from ...utils.tables import write_csv
from .probes import display, gather

if TYPE_CHECKING:
    from ..analyze import AnalysisContext


@option_rules(num_probes=at_least(1), patch=at_least(1), stride=at_least(1))
def run(
    ctx: AnalysisContext,
    *,
    num_probes: int | None = 10,
    patch: int = 16,
    stride: int = 4,
    fill: float = 0.0,
    layer: str | None = "conv5",
    projection: bool = True,
) -> dict:
    """Occlusion grids of ``num_probes`` evenly spaced images (None: all): a ``patch`` square moved by
    ``stride``, filled with ``fill`` (normalized space); ``layer``'s strongest map tracked (and projected
    with the deconvnet when ``projection``)."""
    images, labels, indices = gather(ctx.dataset, num_probes)
    classes = ctx.data.get("classes")
    rows = []
    for x, y, i in zip(images, labels.tolist(), indices):
        x = x.to(ctx.device)
        occ = fig7.compute(
            ctx.model,
            x,
            y,
            patch=patch,
            stride=stride,
            fill=fill,
            layer=layer,
            batch_size=ctx.batch_size,
            projection=projection,
        )
        name = classes[y] if classes else str(y)
        emit(
            ctx.sink,
            fig7.draw(occ, display(ctx, x), classes, f"analysis/occlusion/{i:06d}", f"image {i} ({name})", index=i),
            0,
        )
        res = occ.result
        k = int(res.prob.argmin())
        gw = res.prob.shape[1]
        rows.append(
            {
                "index": i,
                "label": y,
                "class": name,
                "clean_prob": res.clean_prob,
                "min_prob": float(res.prob.min()),
                "min_y": (k // gw) * res.stride[0],
                "min_x": (k % gw) * res.stride[1],
                "clean_top_class": res.clean_top_class,
                "channel": res.channel,
                "method": res.method,
            }
        )
    path = write_csv(rows, Path(ctx.out_dir) / "occlusion.csv")
    return {"csv": str(path), "n": len(rows)}
