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
  accuracy at a flat 15 px (``pointing_acc_15px``, loose at 64 px) and exactly-on-the-mask (``_0px``).
- masks: the shapes object masks mapped through the eval geometry (:mod:`zfnet_exp.data.masks`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ...data.masks import base_folder, load_mask
from ...diagnostics.attribution import attribute
from ...diagnostics.faithfulness import (
    faithfulness_table,
    pointing_accuracy,
    pointing_game,
)
from ...diagnostics.occlusion import occlusion_sensitivity
from .occlusion import gather, write_rows


def occlusion_maps(model, images, labels, patch: int, stride: int, fill: float, score: str,
                   batch_size: int = 64) -> torch.Tensor:
    """[B, H, W] per-pixel occlusion maps (mean drop of the target score over the covering positions)."""
    maps = []
    for x, y in zip(images, labels.tolist()):
        res = occlusion_sensitivity(model, x, y, patch=patch, stride=stride, fill=fill, layer=None,
                                    batch_size=batch_size)
        maps.append(res.per_pixel(score).float())
    return torch.stack(maps)


def compute_maps(model, images, labels, methods, a, batch_size: int = 64) -> tuple[dict, dict]:
    """Heat maps per method and the seconds each took."""
    maps, secs = {}, {}
    for m in methods:
        t0 = time.perf_counter()
        if m.startswith("occlusion"):  # occlusion (score from the config), occlusion_prob, occlusion_logit
            score = m.split("_", 1)[1] if "_" in m else str(a.occlusion_score)
            maps[m] = occlusion_maps(model, images, labels, int(a.patch), int(a.stride), float(a.fill),
                                     score, batch_size).to(images.device)
        else:
            chunks = [attribute(m, model, images[s: s + 16], labels[s: s + 16])
                      for s in range(0, len(images), 16)]
            maps[m] = torch.cat(chunks)
        secs[m] = time.perf_counter() - t0
    return maps, secs


def run(ctx) -> dict:
    a = ctx.cfg.analysis
    images, labels, indices = gather(ctx.dataset, a.get("num_images") or ctx.cfg.get("num_images"))
    images, labels = images.to(ctx.device), labels.to(ctx.device)
    size = int(images.shape[-1])
    folder = base_folder(ctx.dataset)
    masks = torch.stack([load_mask(folder, i, size) for i in indices])
    tol = float(a.tolerance) if a.get("tolerance") is not None else 15.0 * size / 224
    bs = int(ctx.cfg.get("batch_size", 64))
    maps, secs = compute_maps(ctx.model, images, labels, list(a.methods), a, bs)
    rows = faithfulness_table(ctx.model, images, labels, masks, maps, n_steps=a.get("n_steps"), batch_size=bs,
                              tolerance=tol, include_center=True)
    for r in rows:
        m = maps[r["method"]] if r["method"] in maps else None
        if m is None:
            from ...diagnostics.faithfulness import center_baseline
            m = center_baseline(*masks.shape)
        r["pointing_acc_15px"] = pointing_accuracy(pointing_game(m.cpu(), masks, 15))
        r["pointing_acc_0px"] = pointing_accuracy(pointing_game(m.cpu(), masks, 0))
        r["tolerance_px"] = tol
        r["map_seconds"] = secs.get(r["method"], 0.0)
    out = Path(ctx.out_dir)
    write_rows(rows, out / "faithfulness.csv")
    meta = {"rows": rows, "n_images": len(indices), "indices": indices, "tolerance_px": tol,
            "image_size": size, "n_steps": a.get("n_steps") or size, "target": "true class",
            "occlusion": {"patch": int(a.patch), "stride": int(a.stride), "fill": float(a.fill),
                          "score": str(a.occlusion_score)},
            "checkpoint": str(ctx.checkpoint)}
    (out / "faithfulness.json").write_text(json.dumps(meta, indent=1))
    for r in rows:
        print(f"{r['method']:>22}  del {r['deletion_auc']:.3f}  ins {r['insertion_auc']:.3f}  "
              f"point {r['pointing_acc']:.3f} (tol {tol:.1f}px)  @15px {r['pointing_acc_15px']:.3f}  "
              f"@0px {r['pointing_acc_0px']:.3f}", flush=True)
    return {"rows": rows, "csv": str(out / "faithfulness.csv")}
