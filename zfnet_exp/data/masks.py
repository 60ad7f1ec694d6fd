"""Shapes object masks and keypoints in the *network input* frame.

Why: the pointing game and the correspondence analysis compare heat maps ([H, W] at the crop size) with
annotations that live in the original image's pixels. The eval transform resizes and centre-crops, so the
masks go through the same deterministic geometry (:func:`~zfnet_exp.data.transforms.eval_geometry`, nearest
interpolation) and points through the equivalent affine map (:func:`eval_point_map`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, Subset

from .folder import IndexedImageFolder
from .transforms import eval_geometry, resize_for


def base_folder(dataset: Dataset) -> IndexedImageFolder:
    """The IndexedImageFolder under (nested) Subsets; dataset items carry *its* indices."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    if not isinstance(dataset, IndexedImageFolder):
        raise TypeError(f"expected an IndexedImageFolder (or a Subset of one), got {type(dataset).__name__}")
    return dataset


def mask_path(folder: IndexedImageFolder, index: int) -> Path:
    """``<root>/masks/<split>/<class>/<id>.png`` for the image ``folder.samples[index]``."""
    img = Path(folder.samples[index][0])
    split_dir = Path(folder.root)
    return split_dir.parent / "masks" / split_dir.name / img.parent.name / (img.stem + ".png")


def load_mask(folder: IndexedImageFolder, index: int, crop_size: int) -> Tensor:
    """BoolTensor [crop, crop]: the object mask of image ``index`` mapped into the network input."""
    path = mask_path(folder, index)
    if not path.is_file():
        raise FileNotFoundError(f"no mask for {folder.samples[index][0]} (expected {path}); masks exist for the "
                                "generated shapes dataset only")
    m = eval_geometry(crop_size)(Image.open(path).convert("L"))
    return torch.from_numpy(np.asarray(m) > 127)


def eval_point_map(orig_size: tuple[int, int], crop_size: int) -> tuple[float, float, float, float]:
    """(sx, sy, ox, oy) so that a point (x, y) in the original image (w, h = ``orig_size``) lands at
    (x * sx - ox, y * sy - oy) in the network input: torchvision's Resize(shorter side) then the two
    centre crops of :func:`eval_geometry` (same rounding as ``CenterCrop``)."""
    w, h = orig_size
    size = resize_for(crop_size)
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nh, nw = size, int(size * w / h)
    sx, sy = nw / w, nh / h
    oy = int(round((nh - size) / 2.0))
    ox = int(round((nw - size) / 2.0))
    oy += int(round((size - crop_size) / 2.0))
    ox += int(round((size - crop_size) / 2.0))
    return sx, sy, float(ox), float(oy)


def map_point(xy, orig_size: tuple[int, int], crop_size: int) -> tuple[float, float]:
    """An annotation point (x, y) in original pixels -> (x, y) in the network input."""
    sx, sy, ox, oy = eval_point_map(orig_size, crop_size)
    return float(xy[0]) * sx - ox, float(xy[1]) * sy - oy


def mapped_annotation(folder: IndexedImageFolder, index: int, crop_size: int) -> dict | None:
    """The JSON sidecar with ``center`` and ``keypoints`` mapped into the network input frame."""
    ann = folder.annotation(index)
    if ann is None:
        return None
    with Image.open(folder.samples[index][0]) as im:
        size = im.size
    out = dict(ann)
    if "center" in ann:
        out["center"] = list(map_point(ann["center"], size, crop_size))
    out["keypoints"] = {k: list(map_point(v, size, crop_size)) for k, v in ann.get("keypoints", {}).items()}
    return out


__all__ = ["base_folder", "eval_point_map", "load_mask", "map_point", "mapped_annotation", "mask_path"]
