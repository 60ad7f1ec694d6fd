"""``analysis=invariance``: ZF Fig. 5, feature distance and true-class probability under vertical
translation, scaling and rotation, for a few evenly spaced images (``invariance.csv`` + one PNG per
transform in the run folder, also sent through the sink under ``analysis/invariance/<transform>``).

The translation range scales with the input (the paper's -60..60 px at 224 px is -17..17 px at 64 px).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...diagnostics.invariance import TRANSFORMS, default_values, invariance_curves
from ...utils.options import at_least, one_of, option_rules
from ...utils.tables import write_csv
from ...viz.invariance_figure import invariance_figures
from .probes import gather

if TYPE_CHECKING:
    from ..analyze import AnalysisContext


def _amounts(value) -> str | None:
    """``amounts``: {transform: [values]} (null for a transform: its default values)."""
    ok = value is None or (
        not set(value) - set(TRANSFORMS)
        and all(
            v is None or (isinstance(v, list) and all(isinstance(x, int | float) for x in v)) for v in value.values()
        )
    )
    return None if ok else f"a mapping of {', '.join(TRANSFORMS)} to lists of numbers"


@option_rules(num_probes=at_least(1), transforms=one_of(TRANSFORMS), amounts=_amounts)
def run(
    ctx: AnalysisContext,
    *,
    num_probes: int | None = 5,
    transforms: list[str] = ("translation", "scale", "rotation"),
    layers: list[str] = ("conv1", "fc7"),
    fill: float = 0.0,
    amounts: dict[str, list[float]] | None = None,
) -> dict:
    """Curves of ``num_probes`` images under ``transforms`` at ``layers``; ``amounts`` replaces the paper's
    range of a transform (vacated pixels filled with ``fill``)."""
    images, labels, indices = gather(ctx.dataset, num_probes)
    images = images.to(ctx.device)
    values = default_values(int(images.shape[-2]))
    amounts = amounts or {}
    values = {k: list(amounts[k]) if amounts.get(k) is not None else v for k, v in values.items() if k in transforms}
    classes = ctx.data.get("classes")
    names = [f"{i} ({classes[y]})" if classes else str(i) for i, y in zip(indices, labels.tolist())]
    rows = invariance_curves(
        ctx.model,
        images,
        labels,
        layers=list(layers),
        values=values,
        fill=fill,
        batch_size=ctx.batch_size,
    )
    csv_path = write_csv(rows, Path(ctx.out_dir) / "invariance.csv")
    pngs = [
        ctx.sink.log_image(f"analysis/invariance/{kind}", fig, step=0)
        for kind, fig in invariance_figures(rows, names).items()
    ]
    return {"csv": str(csv_path), "pngs": [str(p) for p in pngs], "n_rows": len(rows)}
