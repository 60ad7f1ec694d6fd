"""``analysis=attribution``: one comparison figure per probe image, ZF's deconvnet and occlusion beside the
modern maps (guided backprop, saliency, Grad-CAM, integrated gradients), all for the true class, so that
what the paper's visualizations show can be judged against them (``diagnostics/analysis/attribution/``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...utils.options import at_least, option_rules
from ...utils.tables import write_csv
from ...utils.tensors import argmax_yx
from ...viz.comparison import comparison_figure
from .faithfulness import HEAT_MAP_RULES, compute_maps
from .probes import display, gather

if TYPE_CHECKING:
    from ..analyze import AnalysisContext


@option_rules(num_probes=at_least(1), **HEAT_MAP_RULES)
def run(
    ctx: AnalysisContext,
    *,
    num_probes: int | None = 10,
    methods: list[str] = (
        "deconvnet_zf",
        "deconvnet",
        "guided_backprop",
        "saliency",
        "gradcam",
        "integrated_gradients",
        "occlusion",
    ),
    patch: int = 16,
    stride: int = 4,
    fill: float = 0.0,
    occlusion_score: str = "logit",
) -> dict:
    """One comparison figure of ``methods`` per probe (``num_probes`` evenly spaced images; None: all);
    ``patch``/``stride``/``fill``/``occlusion_score`` configure the occlusion map."""
    images, labels, indices = gather(ctx.dataset, num_probes)
    images, labels = images.to(ctx.device), labels.to(ctx.device)
    maps, _ = compute_maps(
        ctx.model, images, labels, list(methods), patch, stride, fill, occlusion_score, ctx.batch_size
    )
    classes = ctx.data.get("classes")
    rows = []
    for k, (x, y, i) in enumerate(zip(images, labels.tolist(), indices)):
        name = classes[y] if classes else str(y)
        fig = comparison_figure(display(ctx, x), {m: v[k] for m, v in maps.items()}, title=f"image {i} ({name})")
        ctx.sink.log_image(f"analysis/attribution/{i:06d}", fig, step=0, caption=name)
        for m, v in maps.items():
            py, px = argmax_yx(v[k]).tolist()
            rows.append({"index": i, "label": y, "method": m, "peak_y": py, "peak_x": px})
    path = write_csv(rows, Path(ctx.out_dir) / "attribution_peaks.csv")
    return {"csv": str(path), "n": len(indices)}
