"""Conversions between tensors/arrays and PIL images for figures."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def to_pil(image) -> Image.Image:
    """A PIL image from a PIL image, a :class:`~zfnet_exp.viz.canvas.Canvas` (anything with ``to_pil()``), a
    matplotlib ``Figure``, a [3|1,H,W] / [H,W] tensor in [0, 1], or an HWC uint8/float array."""
    if isinstance(image, Image.Image):
        return image
    if hasattr(image, "to_pil"):
        return image.to_pil()
    if hasattr(image, "savefig"):
        return figure_to_pil(image)
    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
        if t.ndim == 3 and t.shape[0] in (1, 3):
            t = t.permute(1, 2, 0)
        arr = (t.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    else:
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    return Image.fromarray(arr)


def normalize_each(x: torch.Tensor) -> torch.Tensor:
    """Per-image symmetric contrast normalization ``[N, C, H, W]`` -> [0, 1]: 0 stays mid-grey and the
    largest ``|value|`` of each image goes to 0 or 1. Projection magnitudes differ by orders of magnitude
    between maps and layers and their sign matters, so a shared scale would show only the strongest few."""
    x = x.detach().float()
    scale = x.flatten(1).abs().amax(1).clamp_min(1e-12)[:, None, None, None]
    return (0.5 + 0.5 * x / scale).clamp(0, 1)


def minmax_each(x: torch.Tensor) -> torch.Tensor:
    """Per-item min-max scaling ``[N, ...]`` -> [0, 1] (a constant item becomes mid-grey 0.5): for unsigned
    displays (first-layer filters, heat maps) whose items differ in scale by orders of magnitude."""
    x = x.detach().float()
    lo = x.flatten(1).amin(1).view(-1, *[1] * (x.dim() - 1))
    hi = x.flatten(1).amax(1).view(-1, *[1] * (x.dim() - 1))
    span = hi - lo
    return torch.where(span > 0, (x - lo) / span.clamp_min(1e-30), torch.full_like(x, 0.5))


def figure_to_pil(fig) -> Image.Image:
    """A matplotlib ``Figure`` (built without pyplot: no global state, safe inside callbacks) as an RGB
    PIL image, which is what :class:`~zfnet_exp.viz.sink.ImageSink` takes. Rendered straight into Agg's
    pixel buffer (no PNG encode/decode round trip: the sink encodes once when it writes the file); the
    image is ``figsize * dpi`` pixels, as ``fig.savefig(path)`` would write it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())
