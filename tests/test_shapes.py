"""The embedded dataset: deterministic, masks match the drawn objects, classes decided by shape alone."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from zfnet_exp.data.shapes import SHAPE_CLASSES, ShapesSpec, generate_shapes, image_seed, render

SPEC = ShapesSpec(image_size=73, train_per_class=2, val_per_class=1, safe_size=64)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_generation_is_deterministic_and_independent_of_workers(tmp_path):
    a = generate_shapes(tmp_path / "a", SPEC, workers=1, progress=False)
    b = generate_shapes(tmp_path / "b", SPEC, workers=2, progress=False)
    assert _digest(a) == _digest(b)
    assert generate_shapes(tmp_path / "a", SPEC, workers=1, progress=False) == a  # reused, not regenerated
    other = generate_shapes(tmp_path / "c", ShapesSpec(**{**SPEC.__dict__, "seed": 1}), workers=1, progress=False)
    assert _digest(other) != _digest(a)


def test_imagefolder_layout_and_sidecars(tmp_path):
    root = generate_shapes(tmp_path, SPEC, workers=1, progress=False)
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(SHAPE_CLASSES)
    images = sorted((root / "train").glob("*/*.png"))
    assert len(images) == SPEC.train_per_class * len(SHAPE_CLASSES)
    for img in images:
        ann = json.loads(img.with_suffix(".json").read_text())
        assert ann["class"] == img.parent.name
        mask = root / "masks" / "train" / img.parent.name / img.name
        assert Image.open(mask).size == Image.open(img).size == (73, 73)
    meta = json.loads((root / "meta.json").read_text())
    assert len(meta["mean"]) == 3 and meta["classes"] == list(SHAPE_CLASSES)


def _rasterize(ann, size):
    """Independent mask: exact point-in-polygon test of every pixel centre (integer coordinates, PIL's
    convention) against the sidecar's outline polygons minus its holes (matplotlib's Path)."""
    from matplotlib.path import Path as MplPath

    yy, xx = np.mgrid[0:size, 0:size]
    pts = np.stack([xx.ravel(), yy.ravel()], 1)
    inside = np.zeros(size * size, bool)
    for poly in ann["outline"]:
        inside |= MplPath(poly).contains_points(pts)
    for poly in ann["holes"]:
        inside &= ~MplPath(poly).contains_points(pts)
    return inside.reshape(size, size)


def test_masks_match_drawn_objects():
    spec = ShapesSpec(image_size=128, safe_size=112)
    for label in range(len(SHAPE_CLASSES)):
        rng = np.random.default_rng(image_seed(0, "train", label))
        image, mask, ann = render(spec, label, rng)
        m = np.asarray(mask) > 0
        ref = _rasterize(ann, 128)
        # they may disagree only on pixels whose centre lies within 1 px of the outline (anti-aliasing rounding)
        ref_im = Image.fromarray(ref.astype(np.uint8) * 255)
        band = (np.asarray(ref_im.filter(ImageFilter.MaxFilter(3))) > 0) & ~(
            np.asarray(ref_im.filter(ImageFilter.MinFilter(3))) > 0
        )
        assert not ((m != ref) & ~band).any(), SHAPE_CLASSES[label]
        assert (m & ref).sum() / (m | ref).sum() > 0.93
        # the object lies inside the training crop, so random crops never cut it
        x0, y0, x1, y1 = ann["bbox"]
        assert 8 <= x0 and x1 <= 120 and 8 <= y0 and y1 <= 120
        # pixels inside the mask differ from the background ring just outside it: the mask is the object
        img = np.asarray(image, dtype=np.float32)
        ring = (np.asarray(mask.filter(ImageFilter.MaxFilter(7))) > 0) & ~m
        assert np.abs(img[m].mean(0) - img[ring].mean(0)).sum() > 40
        for name, (x, y) in ann["keypoints"].items():
            assert 0 <= x < 128 and 0 <= y < 128, name


def test_nuisance_factors_do_not_depend_on_class():
    """Colour, size and position are drawn independently of the class: their per-class means agree."""
    spec = ShapesSpec(image_size=64, safe_size=56)
    radius, centre_x, colour = {}, {}, {}
    for index in range(400):
        label = index % len(SHAPE_CLASSES)
        image, mask, ann = render(spec, label, np.random.default_rng(image_seed(0, "train", index)))
        radius.setdefault(label, []).append(ann["radius"])
        centre_x.setdefault(label, []).append(ann["center"][0])
        inside = np.asarray(mask) > 0
        colour.setdefault(label, []).append(np.asarray(image, dtype=np.float64)[inside].mean())
    for values, tolerance in ((radius, 0.08), (centre_x, 0.08), (colour, 0.2)):
        means = np.array([np.mean(v) for v in values.values()])
        assert means.std() / means.mean() < tolerance
