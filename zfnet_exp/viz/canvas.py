"""Pixel-exact labelled mosaics: image cells pasted at chosen pixel offsets, text placed beside them.

Why not ``make_grid`` alone: a dashboard figure needs labels (map index, class names, epochs, the numbers a
reader judges the picture by), and a bare tensor mosaic has nowhere to put them. Why not matplotlib: a top-9
figure has 162 cells; one axes per cell costs seconds per figure, and even one 2-megapixel ``imshow`` costs
about 0.4 s to composite, at every epoch and layer. So a :class:`Canvas` lays the cells out in pixels (the
geometry the caller chose, exactly) and writes the labels with Pillow's text renderer in matplotlib's own
DejaVu Sans (the other figures' font): about 20 ms a figure. It records every label and cell box it placed
(``texts``, ``boxes``), so a test can check what a figure says and where its cells are.

Cell sizing (:func:`fit_cells`): a cell smaller than the target is enlarged by the smallest integer factor
that reaches it, with **nearest-neighbour** sampling, so each input pixel stays one visible square: a 7x7
conv1 receptive field is shown as 7x7 blocks, and whether a projection or filter is smooth or pixel noise
(what the aliasing diagnosis is about) is not hidden by interpolation. Where that integer factor would
overshoot the target by more than a third, or the cell is larger than the target, it is resized to the
target with antialiased **bilinear** sampling instead (non-integer nearest would make pixels of unequal sizes;
shrinking without antialiasing would alias).
"""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

PX_PER_PT = 100 / 72  # font sizes are in points at 100 dpi, as in the matplotlib figures
CHAR_EM = 0.6  # average advance of a DejaVu Sans character, in em (for truncating and wrapping labels)


@functools.lru_cache(maxsize=16)
def _font(size: float, bold: bool):
    from matplotlib import font_manager
    from PIL import ImageFont

    path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal"))
    return ImageFont.truetype(path, max(1, round(size * PX_PER_PT)))


def fit_cells(cells: torch.Tensor, size: int) -> torch.Tensor:
    """``[..., C, h, w]`` cells -> ``[..., C, H, W]`` with ``min(H, W)`` about ``size`` (see module docstring:
    integer nearest-neighbour enlargement where it lands within ``4/3 * size``, else antialiased bilinear to
    exactly ``size`` on the shorter side)."""
    h, w = cells.shape[-2:]
    short = max(1, min(h, w))
    lead = cells.shape[:-3]
    flat = cells.reshape(-1, *cells.shape[-3:]).float()
    f = math.ceil(size / short)
    if short == size:
        return cells
    if short < size and short * f <= size * 4 / 3:
        out = F.interpolate(flat, scale_factor=f, mode="nearest")
    else:
        out = F.interpolate(
            flat,
            size=(round(h * size / short), round(w * size / short)),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        ).clamp(0, 1)
    return out.reshape(*lead, *out.shape[-3:])


def fit_text(text: str, width: int, size: float) -> str:
    """``text`` cut (with an ellipsis) to about ``width`` pixels at font ``size`` points."""
    n = max(1, int(width / (CHAR_EM * size * PX_PER_PT)))
    return text if len(text) <= n else text[: max(1, n - 1)] + "\u2026"


@dataclass
class Canvas:
    """A white ``width`` x ``height`` RGB image onto which ``[3, h, w]`` tensors in [0, 1] are pasted at pixel
    offsets and text is placed at pixel positions (origin top left); :meth:`to_pil` draws it (the sink calls
    it). ``texts`` holds ``(x, y, text)`` of every label, ``boxes`` ``(x, y, w, h)`` of every pasted cell."""

    width: int
    height: int
    texts: list[tuple[float, float, str]] = field(default_factory=list)
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pixels = torch.ones(3, int(self.height), int(self.width))
        self._draw: list[tuple] = []

    def paste(self, image: torch.Tensor, x: int, y: int) -> None:
        h, w = image.shape[-2:]
        self.pixels[:, y : y + h, x : x + w] = image.detach().float().cpu().expand(3, -1, -1)
        self.boxes.append((x, y, w, h))

    def frame(self, x: int, y: int, w: int, h: int, color: Sequence[float], width: int = 2) -> None:
        """A ``width``-pixel frame drawn *outside* the box ``(x, y, w, h)`` (the cell itself stays intact)."""
        c = torch.tensor(color, dtype=torch.float32)[:, None, None]
        x0, y0 = max(0, x - width), max(0, y - width)
        self.pixels[:, y0 : y + h + width, x0:x] = c
        self.pixels[:, y0 : y + h + width, x + w : x + w + width] = c
        self.pixels[:, y0:y, x0 : x + w + width] = c
        self.pixels[:, y + h : y + h + width, x0 : x + w + width] = c

    def text(
        self, x: float, y: float, s: str, size: float = 8, ha: str = "left", va: str = "top", bold: bool = False
    ) -> None:
        """``s`` (newlines split it into lines) anchored at ``(x, y)``: ``ha`` left|center|right, ``va``
        top|center; ``size`` in points at 100 dpi."""
        self.texts.append((x, y, s))
        self._draw.append((x, y, s, size, ha, va, bold))

    def to_pil(self):
        """The canvas as an RGB PIL image of exactly ``width`` x ``height`` pixels."""
        from PIL import Image, ImageDraw

        arr = (self.pixels.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        img = Image.fromarray(arr)
        draw = ImageDraw.Draw(img)
        for x, y, s, size, ha, va, bold in self._draw:
            font = _font(size, bold)
            lines = s.split("\n")
            step = line_height(size)
            y0 = y - (len(lines) * step) / 2 if va == "center" else y
            anchor = {"left": "l", "center": "m", "right": "r"}[ha] + "a"
            for i, line in enumerate(lines):
                draw.text((x, y0 + i * step), line, fill=(0, 0, 0), font=font, anchor=anchor)
        return img


def wrap_lines(lines: Sequence[str] | str | None, width: int, size: float) -> list[str]:
    """Title lines (one string or several) wrapped to about ``width`` pixels at font ``size`` points."""
    lines = [lines] if isinstance(lines, str) else list(lines or [])
    n = max(8, int(width / (CHAR_EM * size * PX_PER_PT)))
    return [part for line in lines for part in (textwrap.wrap(line, n) or [""])]


def line_height(size: float) -> int:
    """Pixels a line of text at ``size`` points needs (with a little leading)."""
    return math.ceil(size * PX_PER_PT * 1.3)


def labelled_grid_figure(
    images: torch.Tensor,
    labels: Sequence[str] | None = None,
    title: Sequence[str] | str | None = None,
    cell: int = 96,
    nrow: int = 8,
    pad: int = 4,
    label_size: float = 8,
    title_size: float = 10,
):
    """Images ``[N, 3, h, w]`` in [0, 1], ``nrow`` to a row, each enlarged to about ``cell`` pixels
    (:func:`fit_cells`) with its label under it, and a title of one or more lines on top."""
    cells = fit_cells(images, cell)
    n, (h, w) = cells.shape[0], cells.shape[-2:]
    cols = max(1, min(nrow, n))
    rows = math.ceil(n / cols)
    width = pad + cols * (w + pad)
    titles = wrap_lines(title, width - 2 * pad, title_size)
    lab = line_height(label_size) if labels is not None else 0
    top = pad + len(titles) * line_height(title_size)
    canvas = Canvas(width, top + rows * (h + lab + pad))
    for i, line in enumerate(titles):
        canvas.text(pad, pad + i * line_height(title_size), line, size=title_size)
    for i in range(n):
        x, y = pad + (i % cols) * (w + pad), top + (i // cols) * (h + lab + pad)
        canvas.paste(cells[i], x, y)
        if labels is not None and labels[i]:
            canvas.text(x + w / 2, y + h + 1, fit_text(labels[i], w, label_size), size=label_size, ha="center")
    return canvas


__all__ = ["Canvas", "fit_cells", "fit_text", "labelled_grid_figure", "line_height", "wrap_lines"]
