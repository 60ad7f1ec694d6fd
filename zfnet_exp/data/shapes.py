"""The embedded ``shapes`` dataset: generated, deterministic, and honest about where the evidence lies.

The class of an image is decided by the object's *shape alone*. Colour, size, position, rotation, texture and
the cluttered background are drawn independently of the class, so a network can only score well by looking
at the object's outline; occlusion and attribution maps can then be scored against the ground-truth mask
(a shortcut through the background would show up as a miss).

Images are written in ImageFolder layout (``<root>/<split>/<class>/<id>.png``) so they go through the same
loading code as real data. Every image has two sidecars:

- ``<root>/<split>/<class>/<id>.json``: the drawing parameters, the object's outline polygons in pixel
  coordinates (``outline``; ``holes`` are subtracted), its bounding box and named keypoints (corresponding
  parts of the same shape class: a star's tips, an arrow's tip and tail, ...);
- ``<root>/masks/<split>/<class>/<id>.png``: the binary object mask (255 = object) at image resolution.

Each image is drawn from its own RNG seeded by (seed, split, index), so any subset can be regenerated alone
and the result does not depend on the number of worker processes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..utils.progress import progress_bar
from .stats import channel_stats

GENERATOR_VERSION = 1
SHAPE_CLASSES = (
    "arrow",
    "circle",
    "cross",
    "crescent",
    "heart",
    "lshape",
    "ring",
    "square",
    "star",
    "triangle",
)
SUPERSAMPLE = 4  # outlines are drawn at 4x and box-filtered down for anti-aliased edges


@dataclass(frozen=True)
class ShapesSpec:
    """Everything that determines the generated files; its hash names the cache folder."""

    image_size: int = 128
    train_per_class: int = 400
    val_per_class: int = 50
    seed: int = 0
    # object radius as a fraction of the image side; the object always fits inside the centre
    # crop of side ``safe_size`` (the training crop), so random crops never cut it
    min_radius: float = 0.22
    max_radius: float = 0.32
    safe_size: int | None = None
    # degrees; rotations are uniform in [-range/2, range/2). Any range keeps rotation independent of the class;
    # +-45 degrees (with objects filling ~half the frame) let ZFNet leave its initial plateau ~2x sooner than
    # full 360-degree rotation and 0.15-0.28 radii (measured), which the 10-minute CPU budget needs
    rotation_range: float = 90.0
    clutter: int = 10  # background distractor strokes/blobs per image
    # nuisance strengths: enough variation that colour/texture/background carry no shortcut, little enough that
    # the outline is the strongest edge in the image (full-contrast textures and clutter made even a
    # BatchNorm ResNet-18 sit at chance for 100+ steps, measured)
    texture_strength: float = 0.12  # relative amplitude of the object's texture modulation
    clutter_opacity: float = 0.45  # clutter is blended with the background at this opacity
    # camera-like degradations: per-pixel Gaussian noise (std, 0..255 units) and a light Gaussian blur
    # (radius 0.3-0.8 px) on this share of the images
    pixel_noise: float = 4.0
    blur_probability: float = 0.3

    def key(self) -> str:
        blob = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]


# --------------------------------------------------------------------------- canonical outlines
# Each shape is (outlines, holes, keypoints) in a unit frame: centred at 0, radius about 1, y pointing down.


def _circle(n: int = 64, r: float = 1.0, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def _regular(n: int, r: float = 1.0, phase: float = -np.pi / 2) -> np.ndarray:
    t = phase + np.arange(n) * 2 * np.pi / n
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def _canonical(name: str) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, tuple[float, float]]]:
    if name == "circle":
        return [_circle()], [], {"center": (0.0, 0.0)}
    if name == "ring":
        return [_circle()], [_circle(r=0.55)], {"center": (0.0, 0.0), "rim": (0.0, -0.78)}
    if name == "triangle":
        v = _regular(3)
        return [v], [], {f"vertex{i}": tuple(v[i]) for i in range(3)}
    if name == "square":
        v = _regular(4, r=1.0, phase=-np.pi / 4)
        return [v], [], {f"corner{i}": tuple(v[i]) for i in range(4)}
    if name == "star":
        outer = _regular(5)
        inner = _regular(5, r=0.42, phase=-np.pi / 2 + np.pi / 5)
        v = np.empty((10, 2))
        v[0::2], v[1::2] = outer, inner
        return [v], [], {f"tip{i}": tuple(outer[i]) for i in range(5)}
    if name == "cross":
        a, w = 1.0, 0.33
        v = np.array(
            [(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w), (w, a), (-w, a), (-w, w), (-a, w), (-a, -w), (-w, -w)]
        )
        return [v], [], {"arm_top": (0, -a), "arm_right": (a, 0), "arm_bottom": (0, a), "arm_left": (-a, 0)}
    if name == "crescent":
        # outer disc minus a disc shifted right: horns at the intersection points
        outer, shift, r2 = 1.0, 0.5, 0.85
        x = (outer**2 - r2**2 + shift**2) / (2 * shift)
        y = math.sqrt(max(outer**2 - x**2, 0.0))
        return (
            [_circle(r=outer)],
            [_circle(r=r2, cx=shift)],
            {"horn_top": (x, -y), "horn_bottom": (x, y), "back": (-1.0, 0.0)},
        )
    if name == "heart":
        t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        v = np.stack([x, y], 1) / 17.0
        v[:, 1] += 0.1
        return [v], [], {"cusp": (0.0, -5 / 17.0 + 0.1), "tip": (0.0, 17 / 17.0 + 0.1)}
    if name == "arrow":
        v = np.array([(1.0, 0.0), (0.2, -0.7), (0.2, -0.28), (-1.0, -0.28), (-1.0, 0.28), (0.2, 0.28), (0.2, 0.7)])
        return [v], [], {"tip": (1.0, 0.0), "tail": (-1.0, 0.0)}
    if name == "lshape":
        v = np.array([(-0.8, -1.0), (-0.25, -1.0), (-0.25, 0.45), (0.8, 0.45), (0.8, 1.0), (-0.8, 1.0)])
        return [v], [], {"top": (-0.525, -1.0), "corner": (-0.8, 1.0), "foot": (0.8, 0.725)}
    raise KeyError(name)


# --------------------------------------------------------------------------- drawing


def _place(points: np.ndarray, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return points @ rot.T * radius + np.array([cx, cy])


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3)


TEXTURE_KINDS = ("solid", "stripes", "checker", "noise", "gradient")  # in the order of ``_texture``'s draw


def _texture(
    rng: np.random.Generator, size: int, base: np.ndarray, strength: float, trace: dict | None = None
) -> np.ndarray:
    """A foreground texture (H, W, 3) in [0, 255]: solid, stripes, checker, noise or gradient (its name goes
    into ``trace["texture"]``)."""
    kind = rng.integers(5)
    if trace is not None:
        trace["texture"] = TEXTURE_KINDS[int(kind)]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == 0:
        mod = np.ones((size, size), np.float32)
    elif kind == 1:
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(4, 12)
        mod = 1.0 + strength * np.sign(np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * np.pi / period))
    elif kind == 2:
        cell = int(rng.integers(3, 9))
        mod = 1.0 + strength * (((xx // cell) + (yy // cell)) % 2 * 2 - 1)
    elif kind == 3:
        mod = np.clip(1.0 + rng.normal(0, 0.7 * strength, (size, size)), 0.5, 1.5).astype(np.float32)
    else:
        theta = rng.uniform(0, 2 * np.pi)
        g = (xx * math.cos(theta) + yy * math.sin(theta)) / size
        mod = 1.0 - strength + 2 * strength * (g - g.min()) / max(float(np.ptp(g)), 1e-6)
    return np.clip(base[None, None, :] * mod[..., None], 0, 255)


def _background(
    rng: np.random.Generator, size: int, clutter: int, opacity: float, trace: dict | None = None
) -> Image.Image:
    """The gradient background with ``clutter`` strokes and blobs blended in; with ``trace``, the clean gradient
    (``trace["gradient"]``) and an L image of where clutter was drawn (``trace["clutter"]``: 1 stroke, 2 blob)."""
    a, b = _random_colour(rng), _random_colour(rng)
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    g = (xx * math.cos(theta) + yy * math.sin(theta)) / size
    g = (g - g.min()) / max(float(np.ptp(g)), 1e-6)
    bg = a[None, None] * (1 - g[..., None]) + b[None, None] * g[..., None]
    base = Image.fromarray(bg.astype(np.uint8))
    img = base.copy()
    draw = ImageDraw.Draw(img)
    where = Image.new("L", (size, size), 0) if trace is not None else None
    mark = ImageDraw.Draw(where) if where is not None else None
    for _ in range(clutter):
        col = tuple(int(v) for v in _random_colour(rng))
        if rng.random() < 0.5:  # a stroke
            x0, y0 = rng.uniform(0, size, 2)
            length, ang = rng.uniform(0.1, 0.5) * size, rng.uniform(0, 2 * np.pi)
            line = [(x0, y0), (x0 + length * math.cos(ang), y0 + length * math.sin(ang))]
            width = int(rng.integers(1, 4))
            draw.line(line, fill=col, width=width)
            if mark is not None:
                mark.line(line, fill=1, width=width)
        else:  # a small blob: an ellipse too small to be mistaken for a class object
            x0, y0 = rng.uniform(0, size, 2)
            rx, ry = rng.uniform(0.01, 0.05, 2) * size
            draw.ellipse([x0 - rx, y0 - ry, x0 + rx, y0 + ry], fill=col)
            if mark is not None:
                mark.ellipse([x0 - rx, y0 - ry, x0 + rx, y0 + ry], fill=2)
    if trace is not None:
        trace["gradient"], trace["clutter"] = bg, np.asarray(where)
    return Image.blend(base, img, opacity)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    mean_bg = background.reshape(-1, 3).mean(0)
    for _ in range(32):
        c = _random_colour(rng)
        if np.abs(c - mean_bg).sum() > 150:
            return c
    return 255.0 - mean_bg


def render(
    spec: ShapesSpec, label: int, rng: np.random.Generator, trace: dict | None = None
) -> tuple[Image.Image, Image.Image, dict]:
    """Draw one image of class ``label``; returns (RGB image, L mask, annotation).

    ``trace`` (a dict, filled in place) records what was drawn beyond the annotation, for the concept masks of
    :mod:`zfnet_exp.data.concepts`: the texture kind, the object's base colour, the clean background gradient,
    where clutter was drawn, the object's coverage ``alpha`` and the composite before noise and blur. Recording
    draws nothing from ``rng``, so the image is bit-identical with or without it."""
    size = spec.image_size
    name = SHAPE_CLASSES[label]
    safe = spec.safe_size or size
    margin = (size - safe) / 2
    radius = rng.uniform(spec.min_radius, spec.max_radius) * size
    cx = rng.uniform(margin + radius, size - margin - radius)
    cy = rng.uniform(margin + radius, size - margin - radius)
    angle = np.radians(rng.uniform(-spec.rotation_range / 2, spec.rotation_range / 2))

    outlines, holes, keypoints = _canonical(name)
    # normalise so the shape's farthest point sits at ``radius``: size is class-independent
    extent = max(np.linalg.norm(o, axis=1).max() for o in outlines)
    scale = radius / extent
    outlines = [_place(o, cx, cy, scale, angle) for o in outlines]
    holes = [_place(h, cx, cy, scale, angle) for h in holes]
    kps = {k: _place(np.array([v]), cx, cy, scale, angle)[0] for k, v in keypoints.items()}

    big = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(big)
    for o in outlines:
        draw.polygon([tuple(p) for p in (o + 0.5) * SUPERSAMPLE - 0.5], fill=255)
    for h in holes:
        draw.polygon([tuple(p) for p in (h + 0.5) * SUPERSAMPLE - 0.5], fill=0)
    alpha = np.asarray(big.resize((size, size), Image.BOX), dtype=np.float32) / 255.0

    background = _background(rng, size, spec.clutter, spec.clutter_opacity, trace)
    bg = np.asarray(background, dtype=np.float32)
    base_colour = _contrasting_colour(rng, bg)
    fg = _texture(rng, size, base_colour, spec.texture_strength, trace)
    img = bg * (1 - alpha[..., None]) + fg * alpha[..., None]
    if trace is not None:
        trace.update(object_colour=base_colour, alpha=alpha, clean=img.copy())
    img = np.clip(img + rng.normal(0, spec.pixel_noise, img.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(img)
    if rng.random() < spec.blur_probability:
        image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 0.8))))

    mask = Image.fromarray(((alpha >= 0.5) * 255).astype(np.uint8))
    ys, xs = np.nonzero(alpha >= 0.5)
    annotation = {
        "class": name,
        "label": int(label),
        "center": [float(cx), float(cy)],
        "radius": float(radius),
        "rotation_deg": float(np.degrees(angle) % 360),
        "bbox": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
        "outline": [o.round(2).tolist() for o in outlines],
        "holes": [h.round(2).tolist() for h in holes],
        "keypoints": {k: [round(float(v[0]), 2), round(float(v[1]), 2)] for k, v in kps.items()},
    }
    return image, mask, annotation


# --------------------------------------------------------------------------- writing the folder


def image_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, {"train": 0, "val": 1}[split], index])


def _write_one(args: tuple[ShapesSpec, str, str, int, int]) -> None:
    spec, root, split, label, index = args
    rng = np.random.default_rng(image_seed(spec.seed, split, index))
    image, mask, ann = render(spec, label, rng)
    cls = SHAPE_CLASSES[label]
    stem = f"{index:06d}"
    image.save(Path(root, split, cls, stem + ".png"), optimize=False, compress_level=1)
    mask.save(Path(root, "masks", split, cls, stem + ".png"), compress_level=1)
    Path(root, split, cls, stem + ".json").write_text(json.dumps(ann))


def _jobs(spec: ShapesSpec, root: Path):
    for split, per_class in (("train", spec.train_per_class), ("val", spec.val_per_class)):
        n = per_class * len(SHAPE_CLASSES)
        for index in range(n):
            # class interleaved with index: every prefix of a split is class-balanced
            yield spec, str(root), split, index % len(SHAPE_CLASSES), index


def generate_shapes(
    cache_dir: str | os.PathLike, spec: ShapesSpec | None = None, workers: int | None = None, progress: bool = True
) -> Path:
    """Generate (or reuse) the dataset for ``spec`` under ``cache_dir/shapes-<key>`` and return its root.

    Generation writes into a temporary folder that is renamed into place only when complete, so an
    interrupted run never leaves a half-written dataset that later runs would trust.
    """
    spec = spec or ShapesSpec()
    cache_dir = Path(cache_dir)
    root = cache_dir / f"shapes-{spec.key()}"
    if (root / "meta.json").is_file():
        return root
    tmp = cache_dir / f".tmp-shapes-{spec.key()}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for split in ("train", "val"):
        for cls in SHAPE_CLASSES:
            (tmp / split / cls).mkdir(parents=True, exist_ok=True)
            (tmp / "masks" / split / cls).mkdir(parents=True, exist_ok=True)
    jobs = list(_jobs(spec, tmp))
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    desc = f"Generating shapes dataset ({len(jobs)} images) in {root}"
    bar = progress_bar(total=len(jobs), desc=desc, enabled=progress, unit="img", leave=False)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_write_one, jobs, chunksize=64):
                bar.update(1)
    else:
        for job in jobs:
            _write_one(job)
            bar.update(1)
    bar.close()
    mean, std = channel_stats(sorted((tmp / "train").glob("*/*.png")))
    meta = {
        "spec": asdict(spec),
        "version": GENERATOR_VERSION,
        "classes": list(SHAPE_CLASSES),
        "mean": mean,
        "std": std,
        "num_train": spec.train_per_class * len(SHAPE_CLASSES),
        "num_val": spec.val_per_class * len(SHAPE_CLASSES),
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    try:
        tmp.rename(root)
    except OSError:  # another process finished first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return root

