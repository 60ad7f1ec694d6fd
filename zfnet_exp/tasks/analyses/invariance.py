"""``analysis=invariance``: ZF Fig. 5, feature distance and true-class probability under vertical
translation, scaling and rotation, for a few evenly spaced images (``invariance.csv`` + one PNG per
transform in the run folder, also sent through the sink under ``analysis/invariance/<transform>``).

The translation range scales with the input (the paper's -60..60 px at 224 px is -17..17 px at 64 px).
"""

from __future__ import annotations

from pathlib import Path

from ...diagnostics.invariance import default_values, invariance_curves
from ...utils.tables import write_csv
from ...viz.invariance_figure import invariance_figures
from .probes import gather


def run(ctx) -> dict:
    a = ctx.cfg.analysis
    images, labels, indices = gather(ctx.dataset, a.get("num_probes"))
    images = images.to(ctx.device)
    values = default_values(int(images.shape[-2]))
    amounts = a.get("amounts") or {}
    values = {
        k: list(amounts[k]) if amounts.get(k) is not None else v for k, v in values.items() if k in list(a.transforms)
    }
    classes = ctx.data.get("classes")
    names = [f"{i} ({classes[y]})" if classes else str(i) for i, y in zip(indices, labels.tolist())]
    rows = invariance_curves(
        ctx.model,
        images,
        labels,
        layers=list(a.layers),
        values=values,
        fill=float(a.fill),
        batch_size=int(ctx.cfg.get("batch_size", 64)),
    )
    csv_path = write_csv(rows, Path(ctx.out_dir) / "invariance.csv")
    pngs = [
        ctx.sink.log_image(f"analysis/invariance/{kind}", fig, step=0)
        for kind, fig in invariance_figures(rows, names).items()
    ]
    return {"csv": str(csv_path), "pngs": [str(p) for p in pngs], "n_rows": len(rows)}
