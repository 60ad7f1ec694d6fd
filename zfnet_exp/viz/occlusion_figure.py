"""Zeiler & Fergus Fig. 7 for one image: (a) the image with the occluder drawn at one position, (b) the total
activation of the strongest conv5 map per occluder position, (c) the deconvnet projection of that map's
strongest unit, (d) P(true class) per occluder position, (e) the most probable class per position, with a
legend of class names.

Built on a matplotlib ``Figure`` (Agg, no pyplot global state: safe inside training callbacks) and returned
as a PIL image, which is what :class:`~zfnet_exp.viz.sink.ImageSink` takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from PIL import Image
from torch import Tensor

from .images import figure_to_pil, normalize_each

if TYPE_CHECKING:  # the type only: viz draws results, it calls no diagnostic
    from ..diagnostics.occlusion import OcclusionResult


def occlusion_figure(
    display: Tensor,
    result: OcclusionResult,
    classes: Sequence[str] | None = None,
    projection: Tensor | None = None,
    title: str | None = None,
) -> Image.Image:
    """The five-panel figure. ``display`` is the de-normalized [3, H, W] image in [0, 1]; ``projection``
    the optional raw deconvnet projection [3, H, W] of panel (c)
    (:func:`zfnet_exp.diagnostics.projections.strongest_unit_projection`), contrast-normalized here."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    img = display.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    h_img, w_img = img.shape[:2]
    gh, gw = result.prob.shape
    # grid cell (i, j) drawn at the occluder's centre, so the grids overlay the image geometry
    sy, sx = result.stride
    py, px = result.patch
    extent = (px / 2 - sx / 2, px / 2 + (gw - 0.5) * sx, py / 2 + (gh - 0.5) * sy, py / 2 - sy / 2)

    n = 5
    fig = Figure(figsize=(2.7 * n + 1.8, 3.6), dpi=100, layout="constrained")
    axes = fig.subplots(1, n)
    name = classes[result.target] if classes else str(result.target)
    axes[0].imshow(img)
    # the occluder at the position that hurts the true class most
    k = int(result.prob.argmin())
    y0, x0 = (k // gw) * sy, (k % gw) * sx
    axes[0].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), px, py, facecolor="grey", edgecolor="white", alpha=0.8))
    axes[0].set_title(f"(a) input; grey square: the occluder\nposition that lowers p({name}) most", fontsize=9)

    if result.activation is not None:
        im = axes[1].imshow(result.activation.numpy(), cmap="jet", extent=extent)
        fig.colorbar(im, ax=axes[1], fraction=0.046)
        axes[1].set_title(
            f"(b) total activation of {result.layer} map {result.channel}\n(its strongest map)", fontsize=9
        )
    else:
        axes[1].set_title("(b) no layer tracked", fontsize=9)
    if projection is not None:
        axes[2].imshow(normalize_each(projection.detach().cpu()[None])[0].permute(1, 2, 0).numpy())
        axes[2].set_title(
            f"(c) deconvnet projection of\n{result.layer} map {result.channel}, strongest unit", fontsize=9
        )
    else:
        axes[2].set_title("(c) no projection", fontsize=9)
    im = axes[3].imshow(result.prob.numpy(), cmap="jet", vmin=0, vmax=1, extent=extent)
    fig.colorbar(im, ax=axes[3], fraction=0.046)
    axes[3].set_title(f"(d) p({name}) per occluder position\n(unoccluded: {result.clean_prob:.2f})", fontsize=9)

    present = sorted(set(result.top_class.flatten().tolist()))
    base = matplotlib.colormaps["tab10" if len(present) <= 10 else "tab20"]
    colors = [base(i % base.N) for i in range(len(present))]
    lut = {c: i for i, c in enumerate(present)}
    idx = torch.tensor([[lut[int(c)] for c in row] for row in result.top_class.tolist()])
    axes[4].imshow(
        idx.numpy(),
        cmap=ListedColormap(colors),
        vmin=-0.5,
        vmax=len(present) - 0.5,
        interpolation="nearest",
        extent=extent,
    )
    axes[4].set_title("(e) most probable class\nper occluder position", fontsize=9)
    handles = [
        Patch(color=colors[i], label=classes[c] if classes and c < len(classes) else str(c))
        for i, c in enumerate(present)
    ]
    axes[4].legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    for ax in axes[[1, 3, 4]]:  # grid cells sit at occluder centres: the margin has none (grey, not white)
        ax.set_facecolor("0.85")
    fig.text(
        0.5,
        0.005,
        f"(b), (d), (e): one value per position of a {py}x{px} grey occluder moved in steps of {sy}x{sx} px, "
        "drawn at the occluder's centre (grey margin: no centre there)",
        ha="center",
        va="bottom",
        fontsize=8,
    )
    for ax in axes:
        ax.set_xlim(-0.5, w_img - 0.5)
        ax.set_ylim(h_img - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return figure_to_pil(fig)


def result_payload(result: OcclusionResult, classes: Sequence[str] | None = None, **extra) -> dict:
    """The grids and settings of a result as JSON-ready data (the numbers the figure is made from)."""
    out = {
        "target": result.target,
        "target_name": classes[result.target] if classes else None,
        "patch": list(result.patch),
        "stride": list(result.stride),
        "fill": result.fill.tolist(),
        "layer": result.layer,
        "channel": result.channel,
        "clean_prob": result.clean_prob,
        "clean_top_class": result.clean_top_class,
        "method": result.method,
        "prob": result.prob.tolist(),
        "top_class": result.top_class.tolist(),
        "activation": None if result.activation is None else result.activation.tolist(),
    }
    out.update(extra)
    return out


__all__ = ["occlusion_figure", "result_payload"]
