"""``analysis=faithfulness``: is each heat map right? Deletion / insertion AUC (RISE) and the pointing game
for occlusion, the deconvnet (ZF's and Captum's), guided backprop, saliency, Grad-CAM, integrated gradients
and the centre baseline, on the checkpoint's validation images with the shapes object masks.

Choices (also written into ``faithfulness.json``):

- target = the true class (as in ZF Fig. 7 and the pointing game).
- occlusion's map = :meth:`OcclusionResult.per_pixel` of the drop of the target's logit
  (``occlusion_score: logit``, Captum's convention; a well-trained model's probability saturates, so many
  positions tie at "drop = clean p" and the map's first maximum lands on the plateau's corner), with the
  analysis' patch/stride (16/4 at 64 px covers every pixel). ``occlusion_prob`` / ``occlusion_logit`` in
  ``methods`` pick the score explicitly (both are in the default table).
- pointing-game tolerance: ``tolerance: null`` scales the published 15 px at 224 px by input/224
  (4.3 px at 64 px), so the tolerance is the same fraction of the image; the table also reports the
  accuracy at a flat 15 px (``pointing_acc_15px``, loose at 64 px) and exactly-on-the-mask (``_0px``),
  a 95% Wilson interval, and the accuracy on the images where the centre baseline misses
  (``pointing_acc_offcentre``), which a centre-biased map cannot pass.
- ``metrics`` picks among deletion / insertion / pointing: the pointing game alone needs no extra forward
  passes, so it runs on a whole split in the time the maps take.
- masks: the shapes object masks mapped through the eval geometry (:mod:`zfnet_exp.data.masks`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from ...data.masks import base_folder, load_mask
from ...diagnostics.attribution import attribute, available_methods, method_options
from ...diagnostics.faithfulness import (
    METRICS,
    baseline_map,
    faithfulness_table,
    pointing_accuracy,
    pointing_game,
)
from ...diagnostics.occlusion import SCORES
from ...errors import UserError
from ...utils.options import at_least, one_of, option_rules
from ...utils.tables import write_csv
from .probes import gather

if TYPE_CHECKING:
    from ..analyze import AnalysisContext


# the options of the analyses that compute heat maps (this one and attribution): every registered attribution
# method name (occlusion included), the occlusion patch and its score
HEAT_MAP_RULES = {
    "methods": one_of(available_methods),
    "patch": at_least(1),
    "stride": at_least(1),
    "occlusion_score": one_of(SCORES),
}


def compute_maps(
    model,
    images,
    labels,
    methods: list[str],
    patch: int = 16,
    stride: int = 4,
    fill: float = 0.0,
    occlusion_score: str = "logit",
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[dict, dict]:
    """Heat maps per registered attribution method (occlusion included) and the seconds each took. Each
    method takes from these settings the options it declared (occlusion: patch, stride, fill, score)."""
    choices = list(available_methods())
    unknown = [m for m in methods if m not in choices]
    if unknown:
        raise UserError(f"analysis.methods has unknown method(s) {unknown}; choose from {', '.join(choices)}.")
    settings = {"patch": patch, "stride": stride, "fill": fill, "score": occlusion_score, "batch_size": batch_size}
    maps, secs = {}, {}
    for m in tqdm(methods, desc="heat maps", unit="method", disable=not progress):
        t0 = time.perf_counter()
        kw = method_options(m, settings)
        chunks = [attribute(m, model, images[s : s + 16], labels[s : s + 16], **kw) for s in range(0, len(images), 16)]
        maps[m] = torch.cat(chunks)
        secs[m] = time.perf_counter() - t0
    return maps, secs


@option_rules(
    num_images=at_least(1),
    n_steps=at_least(1),
    tolerance=at_least(0),
    metrics=one_of(METRICS),
    **HEAT_MAP_RULES,
)
def run(
    ctx: AnalysisContext,
    *,
    num_images: int | None = None,
    methods: list[str] = (
        "occlusion_logit",
        "occlusion_prob",
        "occlusion_grid",
        "deconvnet_zf",
        "deconvnet",
        "guided_backprop",
        "saliency",
        "gradcam",
        "integrated_gradients",
    ),
    metrics: list[str] = METRICS,
    n_steps: int | None = None,
    tolerance: float | None = None,
    patch: int = 16,
    stride: int = 4,
    fill: float = 0.0,
    occlusion_score: str = "logit",
) -> dict:
    """Deletion/insertion AUC and pointing game (``metrics``) of ``methods`` on ``num_images`` evenly spaced
    images (None: every image the task picked); ``n_steps`` None = image height; ``tolerance`` None = 15 px
    scaled by input/224; ``patch``/``stride``/``fill``/``occlusion_score`` configure the occlusion maps."""
    images, labels, indices = gather(ctx.dataset, num_images)
    images, labels = images.to(ctx.device), labels.to(ctx.device)
    size = int(images.shape[-1])
    folder = base_folder(ctx.dataset)
    masks = torch.stack([load_mask(folder, i, size) for i in indices])
    tol = tolerance if tolerance is not None else 15.0 * size / 224
    bs = ctx.batch_size
    metrics = list(metrics or METRICS)
    maps, secs = compute_maps(
        ctx.model, images, labels, list(methods), patch, stride, fill, occlusion_score, bs, progress=True
    )
    rows = faithfulness_table(
        ctx.model,
        images,
        labels,
        masks,
        maps,
        n_steps=n_steps,
        batch_size=bs,
        tolerance=tol,
        include_center=True,
        include_random=True,
        metrics=metrics,
        progress=True,
    )
    for r in rows:
        m = maps.get(r["method"])
        if m is None:
            m = baseline_map(r["method"], *masks.shape)
        if "pointing" in metrics:
            r["pointing_acc_15px"] = pointing_accuracy(pointing_game(m.cpu(), masks, 15))
            r["pointing_acc_0px"] = pointing_accuracy(pointing_game(m.cpu(), masks, 0))
        r["tolerance_px"] = tol
        r["map_seconds"] = secs.get(r["method"], 0.0)
    out = Path(ctx.out_dir)
    write_csv(rows, out / "faithfulness.csv")
    ctx.sink.log_table("analysis/faithfulness", rows, step=0)
    meta = {
        "rows": rows,
        "n_images": len(indices),
        "indices": indices,
        "tolerance_px": tol,
        "image_size": size,
        "n_steps": n_steps or size,
        "target": "true class",
        "metrics": metrics,
        "occlusion": {"patch": patch, "stride": stride, "fill": fill, "score": occlusion_score},
        "checkpoint": str(ctx.checkpoint),
    }
    (out / "faithfulness.json").write_text(json.dumps(meta, indent=1))
    for r in rows:
        print(
            f"{r['method']:>22}"
            + "".join(
                f"  {k} {r[k]:.3f}"
                for k in ("deletion_auc", "insertion_auc", "pointing_acc", "pointing_acc_offcentre")
                if k in r
            ),
            flush=True,
        )
    return {"rows": rows, "csv": str(out / "faithfulness.csv")}
