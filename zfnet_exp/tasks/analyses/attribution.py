"""``analysis=attribution``: one comparison figure per probe image, ZF's deconvnet and occlusion beside the
modern maps (guided backprop, saliency, Grad-CAM, integrated gradients), all for the true class, so that
what the paper's visualizations show can be judged against them (``diagnostics/analysis/attribution/``).
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image

from ...diagnostics.attribution import attribute, comparison_figure
from .faithfulness import occlusion_maps
from .occlusion import gather, write_rows


def run(ctx) -> dict:
    a = ctx.cfg.analysis
    images, labels, indices = gather(ctx.dataset, a.get("num_probes"))
    images, labels = images.to(ctx.device), labels.to(ctx.device)
    maps: dict[str, torch.Tensor] = {}
    for m in a.methods:
        if m == "occlusion":
            maps[m] = occlusion_maps(ctx.model, images, labels, int(a.patch), int(a.stride), float(a.fill),
                                     str(a.occlusion_score))
        else:
            maps[m] = attribute(m, ctx.model, images, labels)
    classes = ctx.data.get("classes")
    d = ctx.data
    rows = []
    for k, (x, y, i) in enumerate(zip(images, labels.tolist(), indices)):
        name = classes[y] if classes else str(y)
        fig = comparison_figure(x.cpu(), {m: v[k] for m, v in maps.items()}, d["mean"] if
                                d.get("normalization", "standard") == "standard" else None,
                                d["std"] if d.get("normalization", "standard") == "standard" else None,
                                title=f"image {i} ({name})")
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        buf.seek(0)
        ctx.sink.log_image(f"analysis/attribution/{i:06d}", Image.open(buf).convert("RGB"), step=0, caption=name)
        for m, v in maps.items():
            flat = int(v[k].flatten().argmax())
            rows.append({"index": i, "label": y, "method": m, "peak_y": flat // v.shape[-1],
                         "peak_x": flat % v.shape[-1]})
    path = write_rows(rows, Path(ctx.out_dir) / "attribution_peaks.csv")
    return {"csv": str(path), "n": len(indices)}
