"""One row of heat maps beside the image they explain (the ``attribution`` analysis' figure)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from .images import minmax_each


def comparison_figure(image: Tensor, maps: Mapping[str, Tensor], title: str | None = None, overlay: bool = True):
    """The image, then each heat map (min-max normalized per map: the maps' units differ; a constant map is
    mid-grey) over a grey copy.

    ``image`` is the displayable [3, H, W] image in [0, 1] (de-normalized by the caller with the
    datamodule's denormalizer); ``maps`` are [H, W] (or [1, H, W]). Built on a matplotlib ``Figure``
    without pyplot (no global state; safe in callbacks and threads) and returned as it is (the sink
    takes it; ``fig.savefig(path)`` writes it).
    """
    from matplotlib.figure import Figure

    shown = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0)
    n = 1 + len(maps)
    fig = Figure(figsize=(2.4 * n, 2.7), dpi=100, layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    axes[0].imshow(shown.numpy())
    axes[0].set_title("image", fontsize=9)
    grey = shown.mean(-1)
    for ax, (name, m) in zip(axes[1:], maps.items()):
        m = minmax_each(m.detach().cpu().reshape(1, *m.shape[-2:]))[0]
        if overlay:
            ax.imshow(grey.numpy(), cmap="gray")
            ax.imshow(m.numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
        else:
            ax.imshow(m.numpy(), cmap="jet", vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


__all__ = ["comparison_figure"]
