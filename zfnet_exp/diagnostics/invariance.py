"""Feature invariance under translation, scaling and rotation (Zeiler & Fergus 2014, Sec. 4, Fig. 5).

For each transform and amount, the paper plots (per example image) the Euclidean distance between the
feature vectors of the original and the transformed image at layer 1 and layer 7, and the probability
of the true class. Here the layers are configurable (default ``"conv1"`` = rectified conv1 output and
``"fc7"``, each flattened), and the curves come back as tidy rows (the analysis task writes them as a
CSV and draws them with :func:`zfnet_exp.viz.invariance_figure.invariance_figures`).

Transform conventions (inputs are *normalized* tensors [B, C, H, W]; the output keeps H x W):

- ``translation``: vertical shift by ``round(value)`` pixels (positive = down); vacated rows take
  ``fill``. An integer shift is exact, with no interpolation.
- ``scale``: zoom about the centre by ``value`` (1.8 = 1.8x larger): bilinear resize to
  ``round(H * value)`` x ``round(W * value)`` (antialiased when shrinking) then centre-crop back to H x W
  (for ``value < 1``: centre-pad with ``fill``).
- ``rotation``: ``torchvision.transforms.functional.rotate`` by ``value`` degrees counter-clockwise
  about the centre, bilinear, ``expand=False`` (same size, content beyond the frame is cut), corners
  take ``fill``.
- ``fill`` defaults to 0.0, which in normalized space is the dataset mean (grey), as for occlusion.
- The identity (shift 0, scale 1, rotation a multiple of 360) returns the input unchanged, so its
  distances are exactly zero.

Paper ranges (read from the v1 figure, 224 px inputs): translation -60..60 px, scale 1..1.8, rotation
0..350 degrees. :func:`default_values` scales the translation range with the input height.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..utils.tensors import eval_mode
from .layers import capture_activations

TRANSFORMS = ("translation", "scale", "rotation")


def default_values(height: int = 224) -> dict[str, list[float]]:
    """The paper's ranges; translation in pixels scaled from 224 px to ``height``."""
    step = 10 * height / 224
    return {
        "translation": [round(k * step) for k in range(-6, 7)],
        "scale": [round(1 + 0.1 * k, 2) for k in range(9)],
        "rotation": [float(a) for a in range(0, 360, 10)],
    }


def is_identity(kind: str, value: float) -> bool:
    if kind == "translation":
        return round(value) == 0
    if kind == "scale":
        return value == 1
    return math.isclose(value % 360, 0) or math.isclose(value % 360, 360)


def transform(images: Tensor, kind: str, value: float, fill: float = 0.0) -> Tensor:
    """Apply one transform to [B, C, H, W] normalized images (see the module docstring), with
    ``torchvision.transforms.v2.functional``: ``affine`` (nearest, integer translation: an exact shift),
    ``resize`` + ``crop``/``pad`` for the zoom, ``rotate`` (bilinear). Crop and pad offsets are
    ``(new - old) // 2`` (v2's ``center_crop`` rounds half to even, which would move odd margins by a pixel)."""
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown transform {kind!r}; choose one of {TRANSFORMS}")
    if kind == "scale" and value <= 0:
        raise ValueError("scale must be positive")
    if is_identity(kind, value):
        return images.clone()
    h, w = images.shape[-2:]
    if kind == "translation":
        return TF.affine(
            images,
            angle=0.0,
            translate=[0, int(round(value))],
            scale=1.0,
            shear=[0.0, 0.0],
            interpolation=InterpolationMode.NEAREST,
            fill=fill,
        )
    if kind == "scale":
        nh, nw = max(1, round(h * value)), max(1, round(w * value))
        out = TF.resize(images, [nh, nw], interpolation=InterpolationMode.BILINEAR, antialias=True)
        top, left = (nh - h) // 2, (nw - w) // 2
        if top > 0 or left > 0:  # zoom in: centre crop (an axis that shrank is cropped whole, then padded)
            out = TF.crop(out, max(top, 0), max(left, 0), min(h, nh), min(w, nw))
        if top < 0 or left < 0:  # zoom out: centre pad with the fill
            py, px = max(-top, 0), max(-left, 0)
            out = TF.pad(out, [px, py, w - out.shape[-1] - px, h - out.shape[-2] - py], fill=fill)
        return out
    return TF.rotate(images, float(value), interpolation=InterpolationMode.BILINEAR, expand=False, fill=fill)


def invariance_curves(
    model: nn.Module,
    images: Tensor,
    labels: Sequence[int] | Tensor,
    layers: Sequence[str] = ("conv1", "fc7"),
    values: Mapping[str, Sequence[float]] | None = None,
    fill: float = 0.0,
    batch_size: int = 64,
) -> list[dict]:
    """Tidy rows ``{transform, value, image, label, dist_<layer>..., prob}``, one per (transform, value, image).

    ``values`` maps transform name -> amounts (default :func:`default_values` for the input height).
    ``dist_<layer>`` is the Euclidean distance between flattened features of the original and the
    transformed image; ``prob`` the softmax probability of ``labels[image]`` on the transformed image.
    """
    b, _, h, _ = images.shape
    labels_t = torch.as_tensor(labels, dtype=torch.long).flatten()
    if labels_t.numel() != b:
        raise ValueError(f"{labels_t.numel()} labels for {b} images")
    values = dict(default_values(h) if values is None else values)
    unknown = set(values) - set(TRANSFORMS)
    if unknown:
        raise ValueError(f"unknown transform(s) {sorted(unknown)}; choose from {TRANSFORMS}")
    jobs = [(kind, float(v)) for kind in TRANSFORMS if kind in values for v in values[kind]]

    def run(x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        with capture_activations(model, layers) as store:
            logits = model(x)
        return {k: store[k].flatten(1).double() for k in layers}, logits.double().softmax(1)

    rows: list[dict] = []
    with eval_mode(model), torch.no_grad():
        clean, clean_probs = {k: [] for k in layers}, []
        for s in range(0, b, batch_size):
            feats, p = run(images[s : s + batch_size])
            clean_probs.append(p)
            for k in layers:
                clean[k].append(feats[k])
        clean = {k: torch.cat(v) for k, v in clean.items()}
        clean_probs = torch.cat(clean_probs)

        def emit(kind: str, value: float, dist: dict[str, Tensor], probs: Tensor) -> None:
            p = probs.gather(1, labels_t.to(probs.device)[:, None])[:, 0]
            for i in range(b):
                row = {"transform": kind, "value": value, "image": i, "label": int(labels_t[i])}
                row.update({f"dist_{k}": float(dist[k][i]) for k in layers})
                row["prob"] = float(p[i])
                rows.append(row)

        pending: list[tuple[str, float, Tensor]] = []  # (kind, value, transformed batch of all images)

        def flush() -> None:
            if not pending:
                return
            x = torch.cat([t for _, _, t in pending])
            feats, probs = [], []
            for s in range(0, x.shape[0], batch_size):
                f, p = run(x[s : s + batch_size])
                feats.append(f)
                probs.append(p)
            feats = {k: torch.cat([f[k] for f in feats]) for k in layers}
            probs = torch.cat(probs)
            for j, (kind, value, _) in enumerate(pending):
                sl = slice(j * b, (j + 1) * b)
                emit(kind, value, {k: (feats[k][sl] - clean[k]).norm(dim=1) for k in layers}, probs[sl])
            pending.clear()

        for kind, value in jobs:
            if is_identity(kind, value):  # reuse the clean pass: exactly zero distance, clean probability
                emit(kind, value, {k: torch.zeros(b, dtype=torch.float64) for k in layers}, clean_probs)
                continue
            pending.append((kind, value, transform(images, kind, value, fill)))
            if len(pending) * b >= batch_size:
                flush()
        flush()
    order = {kind: i for i, kind in enumerate(TRANSFORMS)}
    return sorted(rows, key=lambda r: (order[r["transform"]], r["value"], r["image"]))


__all__ = ["TRANSFORMS", "default_values", "invariance_curves", "is_identity", "transform"]
