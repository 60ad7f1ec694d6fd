"""The paper's Fig. 5 columns 2-4 from the tidy rows of :func:`zfnet_exp.diagnostics.invariance.invariance_curves`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

_XLABEL = {"translation": "vertical translation (px)", "scale": "scale ratio", "rotation": "rotation (degrees)"}


def invariance_figures(rows: Sequence[Mapping], names: Sequence[str] | None = None) -> dict:
    """One figure per transform present in ``rows`` (in the order translation, scale, rotation): a panel per
    feature distance (``dist_<layer>`` columns), then the true-class probability, one line per image.
    Matplotlib ``Figure`` objects (no pyplot), which the sink takes as they are."""
    from matplotlib.figure import Figure

    metrics = [k for k in rows[0] if k.startswith("dist_")] + ["prob"]
    out = {}
    for kind in [t for t in _XLABEL if any(r["transform"] == t for r in rows)]:
        sub = [r for r in rows if r["transform"] == kind]
        images = sorted({r["image"] for r in sub})
        fig = Figure(figsize=(3.6 * len(metrics), 3.0), dpi=100, layout="constrained")
        axes = fig.subplots(1, len(metrics), squeeze=False)[0]
        for ax, metric in zip(axes, metrics):
            for i in images:
                pts = sorted((r["value"], r[metric]) for r in sub if r["image"] == i)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=names[i] if names else f"image {i}")
            ax.set_xlabel(_XLABEL[kind])
            ax.set_ylabel("P(true class)" if metric == "prob" else f"||f - f'|| at {metric[5:]}")
            ax.grid(alpha=0.3)
        axes[-1].legend(fontsize=7)
        fig.suptitle(f"invariance to {kind}", fontsize=10)
        out[kind] = fig
    return out


__all__ = ["invariance_figures"]
