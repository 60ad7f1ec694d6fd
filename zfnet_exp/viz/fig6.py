"""The Fig. 6 comparison figure: one column per first-layer variant, its conv1 filter grid above its conv2
top-9 panel (the paper's Fig. 6 (b)-(e): AlexNet's and ZF's first-layer filters and second-layer features).

Draws only what it is given: the grids come from :func:`zfnet_exp.viz.grids.filter_grid` and
:func:`~zfnet_exp.viz.grids.top9_panel`, the unlabelled forms of the training callbacks' figures with the
same per-cell normalization; this module only places them side by side with their labels.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

ROWS = ("conv1 filters", "conv2 top-9 (deconvnet projections | patches)")


def fig6_figure(
    filters: Mapping[str, Tensor],
    top9: Mapping[str, Tensor | None],
    captions: Mapping[str, str] | None = None,
    title: str | None = None,
):
    """A matplotlib ``Figure`` (no pyplot) with one column per variant (the keys of ``filters``, in order):
    row 1 its conv1 grid, row 2 its conv2 top-9 panel (``None``: left empty, with a note). Images are
    ``[3, H, W]`` in [0, 1]; ``captions[variant]`` goes under the column title (e.g. the measured numbers)."""
    from matplotlib.figure import Figure

    names = list(filters)
    fig = Figure(figsize=(6.5 * len(names), 12), dpi=100, layout="constrained")
    axes = fig.subplots(2, len(names), squeeze=False, height_ratios=[1, 1.3])
    for col, name in enumerate(names):
        for row, image in enumerate((filters[name], top9.get(name))):
            ax = axes[row, col]
            ax.set_axis_off()
            if image is None:
                ax.text(0.5, 0.5, "no panel", ha="center", va="center", transform=ax.transAxes)
            else:
                ax.imshow(image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
            label = f"{name}: {ROWS[row]}"
            if row == 0 and captions and captions.get(name):
                label += "\n" + captions[name]
            ax.set_title(label, fontsize=10)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


__all__ = ["fig6_figure"]
