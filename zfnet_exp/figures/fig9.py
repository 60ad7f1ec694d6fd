"""Paper Fig. 9: transfer accuracy against the number of training images per class, ours beside the paper's.

The curve itself is computed by the transfer task (``tasks/transfer.py``: mean per-class accuracy over the
splits for each N); this module draws it, with the paper's Table 4/5 rows as dashed markers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..viz.images import figure_to_pil
from .result import FigureResult


def draw(
    dataset: str,
    curve: Sequence[Mapping[str, float]],
    label: str,
    paper_rows: Mapping[str, Mapping[int, Sequence[float]]],
) -> FigureResult:
    """``transfer/<dataset>/fig9``: ``curve`` (rows of ``per_class``, ``mean_class_acc``, ``std``, in %) as
    error bars labelled ``label``, and each of ``paper_rows`` (method -> {N: (accuracy %, ...)}) as a dashed
    line "<method> (paper)". Payload: the curve's rows (a table)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.6), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ns = [r["per_class"] for r in curve]
    ax.errorbar(
        ns, [r["mean_class_acc"] for r in curve], yerr=[r["std"] for r in curve], marker="o", capsize=3, label=label
    )
    for method, cells in paper_rows.items():
        xs = sorted(cells)
        ax.plot(xs, [cells[n][0] for n in xs], linestyle="--", marker="x", alpha=0.7, label=f"{method} (paper)")
    ax.set_xlabel("training images per class")
    ax.set_ylabel("mean per-class accuracy %")
    ax.set_title(f"{dataset}: accuracy vs training set size (paper Fig. 9)", fontsize=9)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return FigureResult(key=f"transfer/{dataset}/fig9", figure=figure_to_pil(fig), payload=[dict(r) for r in curve])


__all__ = ["draw"]
