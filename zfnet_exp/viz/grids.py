"""Figure layouts of the deconvnet diagnostics: the paper's Fig. 2 panel (per feature map, a 3x3 grid of
deconvnet projections beside the 3x3 receptive-field patches of the same images), the Fig. 4 evolution
strip (maps x epochs) and the Fig. 6 first-layer filter grid. Code that draws what it is given (the
projections come from :mod:`zfnet_exp.diagnostics.projections`, the numbers in titles from the callers);
the callbacks and offline analyses call the same functions, so the online and offline figures match.

Two forms: ``*_figure`` functions return a labelled, pixel-exact :class:`~.canvas.Canvas` for the dashboard
(the sink takes it; one layer per figure, cells of about ``cell`` = 96 px; see :mod:`.canvas` for how cells
are enlarged and why); :func:`top9_panel`, :func:`evolution_strip` and :func:`filter_grid` return bare ``[3, H, W]``
tensors for composing larger figures.

Display conventions: each projection is contrast-normalized on its own, symmetrically around grey
(0 -> 0.5, the largest |value| -> 0 or 1), as in the paper's Fig. 2: projection magnitudes differ by orders
of magnitude between maps and layers and the sign matters (a shared scale would show only the strongest
few). Patches are shown de-normalized, as the network's input looked. Filters are min-max normalized each.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid

from .canvas import Canvas, fit_cells, fit_text, line_height, wrap_lines
from .images import minmax_each, normalize_each

CELL = 96  # on-screen cell size (px) of the dashboard figures: readable in a W&B media panel
RED = (0.85, 0.1, 0.1)


def tile(cells: torch.Tensor, nrow: int, pad: int = 1, pad_value: float = 1.0) -> torch.Tensor:
    """``[N, 3, h, w]`` -> one image ``[3, H, W]`` with ``nrow`` cells per row, ``pad`` pixels of
    ``pad_value`` around every cell (``torchvision.utils.make_grid``, which also pads a short last row)."""
    if cells.shape[0] == 1:  # make_grid returns a single cell as it is, without the border
        return F.pad(cells[0], (pad,) * 4, value=pad_value)
    return make_grid(cells, nrow=nrow, padding=pad, pad_value=pad_value)


def _filters_for_display(weight: torch.Tensor) -> torch.Tensor:
    w = weight.detach().float().cpu()
    if w.dim() != 4 or w.shape[1] not in (1, 3):
        raise ValueError(f"filter grids show [N, 3 or 1, kh, kw] filters (a first layer); got {tuple(w.shape)}")
    return minmax_each(w.expand(-1, 3, -1, -1))


def filter_grid(
    weight: torch.Tensor, nrow: int | None = None, padding: int = 1, scale: int = 1, pad_value: float = 1.0
) -> torch.Tensor:
    """First-layer filters ``[N, 3 (or 1), kh, kw]`` as one RGB image ``[3, H, W]`` in [0, 1] (paper Fig. 6).

    Each filter is contrast-normalized on its own (min -> 0, max -> 1 over its three channels), as in
    the paper's figures: filter norms differ by orders of magnitude, so one shared scale would show only
    the strongest few. A constant filter becomes mid-grey. ``scale`` enlarges each pixel (nearest).
    """
    w = _filters_for_display(weight)
    if scale > 1:
        w = F.interpolate(w, scale_factor=scale, mode="nearest")
    return tile(w, nrow or math.ceil(math.sqrt(w.shape[0])), pad=padding, pad_value=pad_value)


def filter_figure(
    weight: torch.Tensor,
    title: Sequence[str] | str | None = None,
    marked: Sequence[int] = (),
    cell: int = CELL,
    nrow: int | None = None,
):
    """The dashboard form of :func:`filter_grid`: each filter enlarged to about ``cell`` px by an integer
    nearest-neighbour factor (every weight one visible square: pixel noise must look like pixel noise), a
    title of one or more lines (the caller's numbers: aliasing index, dead count), and a red frame around
    the filters listed in ``marked`` (e.g. dead ones). Returns a :class:`~.canvas.Canvas`."""
    cells = fit_cells(_filters_for_display(weight), cell)
    n, (h, w) = cells.shape[0], cells.shape[-2:]
    cols = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    pad, size = 6, 10
    width = pad + cols * (w + pad)
    titles = wrap_lines(title, width - 2 * pad, size)
    top = pad + len(titles) * line_height(size)
    canvas = Canvas(width, top + rows * (h + pad))
    for i, line in enumerate(titles):
        canvas.text(pad, pad + i * line_height(size), line, size=size)
    marked = set(int(i) for i in marked)
    for i in range(n):
        x, y = pad + (i % cols) * (w + pad), top + (i // cols) * (h + pad)
        canvas.paste(cells[i], x, y)
        if i in marked:
            canvas.frame(x, y, w, h, RED, width=3)
    return canvas


def top9_cells(
    projections: torch.Tensor,
    patches: torch.Tensor,
    filled: torch.Tensor,
    denorm: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Display cells from :func:`zfnet_exp.diagnostics.projections.topk_projections` output (raw projections
    and normalized-input patches ``[M, k, 3, h, w]``, ``filled [M, k]``): projections contrast-normalized
    each on its own, patches de-normalized by ``denorm``, empty slots grey. Both ``[M, k, 3, h, w]`` in [0, 1]."""
    grey = torch.full((3, *projections.shape[-2:]), 0.5)
    show = filled[:, :, None, None, None]
    P = torch.where(show, normalize_each(projections.flatten(0, 1)).view_as(projections), grey)
    Q = torch.where(show, denorm(patches.flatten(0, 1)).view_as(patches).float(), grey)
    return P, Q


def top9_grid(
    projections: torch.Tensor, patches: torch.Tensor, maps_per_row: int = 4, gap: int = 4, cell: int = CELL
) -> torch.Tensor:
    """Fig. 2 layout as a bare tensor. ``projections``/``patches`` ``[M, k, 3, h, w]`` in [0, 1] (k = 9 ->
    3x3 each). Per map: projections on the left, patches on the right; maps tiled ``maps_per_row`` to a
    row, separated by ``gap`` white pixels."""
    projections, patches = fit_cells(projections, cell), fit_cells(patches, cell)
    m, k = projections.shape[:2]
    side = math.ceil(math.sqrt(k))
    panels = []
    for i in range(m):
        left, right = tile(projections[i], side), tile(patches[i], side)
        panels.append(torch.cat([left, torch.ones(3, left.shape[1], 2), right], 2))
    return tile(torch.stack(panels), min(maps_per_row, m), pad=gap)


def top9_panel(
    projections: torch.Tensor,
    patches: torch.Tensor,
    filled: torch.Tensor,
    denorm: Callable[[torch.Tensor], torch.Tensor],
    maps_per_row: int = 4,
    cell: int = CELL,
) -> torch.Tensor:
    """One unlabelled Fig. 2 panel as a tensor (:func:`top9_cells` then :func:`top9_grid`), for composing
    larger figures; the dashboard uses :func:`top9_figure`."""
    return top9_grid(*top9_cells(projections, patches, filled, denorm), maps_per_row=maps_per_row, cell=cell)


def top9_figure(
    projections: torch.Tensor,
    patches: torch.Tensor,
    maps: Sequence[int],
    labels: Sequence[Sequence[str]] | None = None,
    title: Sequence[str] | str | None = None,
    maps_per_row: int = 3,
    cell: int = CELL,
    headings: Sequence[str] | None = None,
):
    """Fig. 2 for one layer, labelled. ``projections``/``patches`` ``[M, k, 3, h, w]`` display cells in
    [0, 1] (:func:`top9_cells`); ``maps`` the M map indices (each panel headed "map <index>", or ``headings[m]``
    when given, e.g. "map 25 · ring · IoU 0.31");
    ``labels[m][j]`` the class name of image j of map m (shown under its patch; "" for none). Per map,
    the paper's layout: the 3x3 projections on the left, the 3x3 patches of the same images on the right;
    ``maps_per_row`` panels to a row (3 at 96 px cells: about 2000 px wide). Returns a :class:`~.canvas.Canvas`."""
    P, Q = fit_cells(projections, cell), fit_cells(patches, cell)
    m, k = P.shape[:2]
    h, w = P.shape[-2:]
    side = math.ceil(math.sqrt(k))
    rows_k = math.ceil(k / side)
    pad, inner, gap, margin = 2, 8, 20, 8
    lab_size, head_size, title_size = 7.5, 9, 10
    lab, head = line_height(lab_size), line_height(head_size)
    block_w = side * w + (side - 1) * pad
    row_h = h + lab + pad
    panel_w, panel_h = 2 * block_w + inner, head + rows_k * row_h
    cols = max(1, min(maps_per_row, m))
    prows = math.ceil(m / cols)
    width = 2 * margin + cols * panel_w + (cols - 1) * gap
    titles = wrap_lines(title, width - 2 * margin, title_size)
    top = margin + len(titles) * line_height(title_size)
    canvas = Canvas(width, top + prows * (panel_h + gap) - gap + margin)
    for i, line in enumerate(titles):
        canvas.text(margin, margin + i * line_height(title_size), line, size=title_size)
    for i in range(m):
        px = margin + (i % cols) * (panel_w + gap)
        py = top + (i // cols) * (panel_h + gap)
        head_text = headings[i] if headings is not None else f"map {maps[i]}"
        canvas.text(px, py, fit_text(head_text, panel_w, head_size), size=head_size, bold=True)
        for j in range(k):
            x, y = px + (j % side) * (w + pad), py + head + (j // side) * row_h
            canvas.paste(P[i, j], x, y)
            canvas.paste(Q[i, j], x + block_w + inner, y)
            name = labels[i][j] if labels is not None else ""
            if name:
                canvas.text(x + block_w + inner + w / 2, y + h, fit_text(name, w, lab_size), size=lab_size, ha="center")
    return canvas


def evolution_strip(cells: torch.Tensor, pad: int = 2, cell: int = CELL) -> torch.Tensor:
    """Fig. 4 layout as a bare tensor: ``cells [M, E, 3, h, w]`` (maps x epochs, in [0, 1]) -> rows = maps,
    columns = epochs."""
    cells = fit_cells(cells, cell)
    e = cells.shape[1]
    return tile(cells.flatten(0, 1), e, pad=pad)


def evolution_figure(
    cells: torch.Tensor,
    columns: Sequence[str],
    rows: Sequence[str],
    title: Sequence[str] | str | None = None,
    cell: int = CELL,
):
    """Fig. 4 for one layer, labelled: ``cells [M, E, 3, h, w]`` in [0, 1] (maps x epochs), each enlarged to
    about ``cell`` px; ``columns`` the E column headers (e.g. "epoch 5"), ``rows`` the M row labels (e.g.
    "map 17"; a newline splits a label over two lines). Returns a :class:`~.canvas.Canvas`."""
    C = fit_cells(cells, cell)
    m, e = C.shape[:2]
    h, w = C.shape[-2:]
    pad, margin, size, title_size = 2, 8, 8.5, 10
    left = margin + max(len(line) for r in rows for line in r.split("\n")) * math.ceil(0.6 * size * 100 / 72) + 6
    width = max(left + e * (w + pad) + margin, 360)  # room for a readable title even with one column
    titles = wrap_lines(title, width - 2 * margin, title_size)
    head = margin + len(titles) * line_height(title_size)
    top = head + line_height(size)
    canvas = Canvas(width, top + m * (h + pad) + margin)
    for i, line in enumerate(titles):
        canvas.text(margin, margin + i * line_height(title_size), line, size=title_size)
    for j, name in enumerate(columns):
        canvas.text(left + j * (w + pad) + w / 2, head, fit_text(name, w, size), size=size, ha="center")
    for i, name in enumerate(rows):
        y = top + i * (h + pad)
        canvas.text(left - 6, y + h / 2, name, size=size, ha="right", va="center")
        for j in range(e):
            canvas.paste(C[i, j], left + j * (w + pad), y)
    return canvas


__all__ = [
    "CELL",
    "evolution_figure",
    "evolution_strip",
    "filter_figure",
    "filter_grid",
    "tile",
    "top9_cells",
    "top9_figure",
    "top9_grid",
    "top9_panel",
]
