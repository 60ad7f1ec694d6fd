"""Dashboard figure geometry (issue 10 "legible figures at dashboard size"): cells of at least 96 px on
screen, labels present, one figure per layer, epochs on the evolution strip's columns.

Cell sizes are measured on the rendered image itself (each input cell is a unique flat colour; its pixels
in the PNG are found and boxed), not read back from the layout arithmetic under test."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from zfnet_exp.viz.canvas import fit_cells, labelled_grid_figure
from zfnet_exp.viz.grids import evolution_figure, filter_figure, top9_figure
from zfnet_exp.viz.images import to_pil


def _flat_cells(n: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, list[tuple[int, int, int]]]:
    """``n`` cells ``[3, h, w]``, each one flat colour, all colours distinct and unlike white/black/grey text."""
    g = torch.Generator().manual_seed(seed)
    levels = torch.randperm(15**3, generator=g)[:n]
    rgb = torch.stack([levels // 225, (levels // 15) % 15, levels % 15], 1) * 17 + 8  # 8..246, step 17
    cells = (rgb.float() / 255)[:, :, None, None].expand(n, 3, h, w).clone()
    return cells, [tuple(int(v) for v in c) for c in rgb]


def _boxes(img: np.ndarray, colors: list[tuple[int, int, int]]) -> list[tuple[int, int, int, int, int]]:
    """Per colour: (x0, y0, width, height, pixel count) of the pixels of exactly that colour (HWC uint8)."""
    codes = (img[..., 0].astype(np.int32) << 16) | (img[..., 1].astype(np.int32) << 8) | img[..., 2]
    flat = codes.ravel()
    order = np.argsort(flat, kind="stable")
    ranked = flat[order]
    out = []
    for r, g, b in colors:
        lo, hi = np.searchsorted(ranked, [r << 16 | g << 8 | b, (r << 16 | g << 8 | b) + 1])
        assert hi > lo, f"colour {(r, g, b)} not drawn"
        ys, xs = np.divmod(order[lo:hi], img.shape[1])
        out.append((int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1), hi - lo))
    return out


@pytest.mark.parametrize("rf", [7, 139])  # conv1's receptive field at 64 px (enlarged), conv5's (reduced)
def test_top9_cells_are_at_least_96_px_in_the_paper_layout(rf):
    """Reference: the rendered pixels. Every projection and patch cell is a solid square >= 96 px; per map the
    3x3 projections sit left of the 3x3 patches of the same images, row for row (paper Fig. 2); the figure
    of 9 maps stays within ~2000 px wide; each map is headed "map <index>" and each patch has its class name."""
    m, k = 9, 9
    cells, colors = _flat_cells(2 * m * k, rf, rf)
    P, Q = cells[: m * k].view(m, k, 3, rf, rf), cells[m * k :].view(m, k, 3, rf, rf)
    maps = [3, 17, 40, 41, 55, 60, 70, 88, 95]
    labels = [[f"class{i}_{j}" for j in range(k)] for i in range(m)]
    canvas = top9_figure(P, Q, maps, labels, title="conv2: top-9", maps_per_row=3)
    img = np.asarray(to_pil(canvas).convert("RGB"))
    assert img.shape[1] <= 2100
    boxes = _boxes(img, colors)
    for _, _, w, h, count in boxes:
        assert w >= 96 and h >= 96 and count == w * h, (w, h, count)  # a solid square, not smeared or cut
    for i in range(m):
        proj, patch = boxes[i * k : (i + 1) * k], boxes[m * k + i * k : m * k + (i + 1) * k]
        assert max(b[0] + b[2] for b in proj) < min(b[0] for b in patch)  # projections left of patches
        assert [b[1] for b in proj] == [b[1] for b in patch]  # same rows: projection j beside patch j
    texts = [t for _, _, t in canvas.texts]
    assert all(f"map {c}" in texts for c in maps)
    assert all(labels[i][j] in texts for i in range(m) for j in range(k))
    assert "conv2: top-9" in texts


def test_top9_class_names_sit_under_their_patch():
    """Reference: the recorded cell boxes and label anchors. A patch's class name is centred under that patch
    (between its bottom edge and the next row), so a reader pairs each name with its image."""
    cells, _ = _flat_cells(2 * 9, 54, 54)
    P, Q = cells[:9].view(1, 9, 3, 54, 54), cells[9:].view(1, 9, 3, 54, 54)
    canvas = top9_figure(P, Q, [5], [[f"n{j}" for j in range(9)]])
    patch_boxes = canvas.boxes[1::2]  # pasted in pairs: projection j, then patch j
    for j, (x, y, w, h) in enumerate(patch_boxes):
        (tx, ty) = next((tx, ty) for tx, ty, t in canvas.texts if t == f"n{j}")
        assert x <= tx <= x + w and abs(tx - (x + w / 2)) <= 1
        assert y + h <= ty < y + h + 20


def test_fit_cells_nearest_keeps_pixels_square():
    """Reference: ``np.kron`` with a block of ones (each source pixel an f x f square). A 7 px cell becomes
    98 px by nearest-neighbour x14; a 64 px image 128 px (x2); a 139 px cell shrinks to 96."""
    x = torch.rand(2, 3, 7, 7)
    y = fit_cells(x, 96)
    assert y.shape[-2:] == (98, 98)
    assert torch.equal(y[1, 0], torch.from_numpy(np.kron(x[1, 0].numpy(), np.ones((14, 14), np.float32))))
    assert fit_cells(torch.rand(1, 3, 64, 64), 96).shape[-2:] == (128, 128)
    assert fit_cells(torch.rand(1, 3, 139, 139), 96).shape[-2:] == (96, 96)


def test_evolution_figure_labels_columns_with_epochs_and_rows_with_maps():
    """Reference: the rendered pixels and the recorded label anchors. Cells >= 96 px; one "epoch N" header
    centred over each column, in epoch order; one "<layer> / map <index>" label left of each row."""
    m, epochs = 3, [1, 2, 5, 12]
    cells, colors = _flat_cells(m * len(epochs), 54, 54, seed=1)
    rows = [f"conv2\nmap {c}" for c in (4, 9, 31)]
    canvas = evolution_figure(cells.view(m, len(epochs), 3, 54, 54), [f"epoch {e}" for e in epochs], rows, "t")
    img = np.asarray(to_pil(canvas).convert("RGB"))
    boxes = _boxes(img, colors)
    assert all(w >= 96 and h >= 96 for _, _, w, h, _ in boxes)
    anchors = {t: (x, y) for x, y, t in canvas.texts}
    for j, e in enumerate(epochs):
        x, y = anchors[f"epoch {e}"]
        bx, by, bw, _, _ = boxes[j]  # row 0, column j
        assert bx <= x <= bx + bw and y < by
    for i, r in enumerate(rows):
        x, y = anchors[r]
        bx, by, _, bh, _ = boxes[i * len(epochs)]
        assert x <= bx and by <= y <= by + bh


def test_filter_figure_enlarges_filters_and_frames_the_marked_ones():
    """Reference: each filter min-max normalized by hand and enlarged with ``np.kron`` (nearest, x14 for 7x7);
    the framed filter's border pixels are red; the title lines are on the canvas."""
    torch.manual_seed(0)
    w = torch.randn(6, 3, 7, 7)
    canvas = filter_figure(w, ["conv1 filters", "aliasing 0.412; dead 1/6"], marked=[4])
    img = np.asarray(to_pil(canvas).convert("RGB")).astype(np.float32)
    for i in (0, 4):
        x, y, cw, ch = canvas.boxes[i]
        assert cw >= 96 and ch >= 96
        f = w[i]
        ref = ((f - f.min()) / (f.max() - f.min())).permute(1, 2, 0).numpy()
        ref = np.kron(ref, np.ones((14, 14, 1), np.float32)) * 255
        assert np.abs(img[y : y + ch, x : x + cw] - ref).max() <= 1
    x, y, cw, ch = canvas.boxes[4]
    assert np.all(img[y - 1, x : x + cw] == [217, 26, 26]) and np.all(img[y : y + ch, x - 1] == [217, 26, 26])
    x, y, cw, ch = canvas.boxes[0]
    assert np.all(img[y - 1, x : x + cw] == 255)  # an unmarked filter has no frame
    assert "aliasing 0.412; dead 1/6" in [t for _, _, t in canvas.texts]


def test_labelled_grid_names_every_image():
    """Reference: the rendered pixels: the 64 px samples are shown at >= 96 px, each with its class name."""
    cells, colors = _flat_cells(4, 64, 64, seed=2)
    canvas = labelled_grid_figure(cells, ["star", "ring", "heart", "arrow"], "first batch", nrow=2)
    img = np.asarray(to_pil(canvas).convert("RGB"))
    assert all(b[2] >= 96 for b in _boxes(img, colors))
    assert {"star", "ring", "heart", "arrow", "first batch"} <= {t for _, _, t in canvas.texts}


def test_class_names_of_reads_the_labels_the_items_carry(tmp_path):
    """Reference: the label of each item as the dataset returns it (``dataset[i][1]``), for the fast path that
    reads ``samples`` without decoding an image; -1 (an empty top-k slot) gives ""."""
    from zfnet_exp.data.folder import IndexedImageFolder
    from zfnet_exp.utils.tensors import class_names_of

    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(2):
            Image.new("RGB", (8, 8), (i * 90, 0, 0)).save(tmp_path / c / f"{i}.png")
    ds = IndexedImageFolder(tmp_path)
    names = ["Cat", "Dog"]
    idx = [3, 0, -1, 2]
    assert class_names_of(ds, idx, names) == [names[ds[i][1]] if i >= 0 else "" for i in idx]
    assert class_names_of(ds, idx, None) == ["", "", "", ""]
