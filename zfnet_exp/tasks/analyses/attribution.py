"""``analysis=attribution``: one comparison figure per probe image, ZF's deconvnet and occlusion beside the
modern maps (guided backprop, saliency, Grad-CAM, integrated gradients), all for the true class, so that
what the paper's visualizations show can be judged against them (``diagnostics/analysis/attribution/``).
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from ...diagnostics.attribution import comparison_figure
from ...utils.tables import write_csv
from .faithfulness import compute_maps
from .occlusion import gather


def run(ctx) -> dict:
    a = ctx.cfg.analysis
    images, labels, indices = gather(ctx.dataset, a.get("num_probes"))
    images, labels = images.to(ctx.device), labels.to(ctx.device)
    maps, _ = compute_maps(ctx.model, images, labels, list(a.methods), a, int(ctx.cfg.get("batch_size", 64)))
    classes = ctx.data.get("classes")
    d = ctx.data
    rows = []
    for k, (x, y, i) in enumerate(zip(images, labels.tolist(), indices)):
        name = classes[y] if classes else str(y)
        fig = comparison_figure(
            x.cpu(),
            {m: v[k] for m, v in maps.items()},
            d["mean"] if d.get("normalization", "standard") == "standard" else None,
            d["std"] if d.get("normalization", "standard") == "standard" else None,
            title=f"image {i} ({name})",
        )
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        buf.seek(0)
        ctx.sink.log_image(f"analysis/attribution/{i:06d}", Image.open(buf).convert("RGB"), step=0, caption=name)
        for m, v in maps.items():
            flat = int(v[k].flatten().argmax())
            rows.append(
                {"index": i, "label": y, "method": m, "peak_y": flat // v.shape[-1], "peak_x": flat % v.shape[-1]}
            )
    path = write_csv(rows, Path(ctx.out_dir) / "attribution_peaks.csv")
    return {"csv": str(path), "n": len(indices)}
