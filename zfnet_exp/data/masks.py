"""Shapes object masks and keypoints in the *network input* frame.

Why: the pointing game and the correspondence analysis compare heat maps ([H, W] at the crop size) with
annotations that live in the original image's pixels. The eval transform resizes and centre-crops, so the
masks go through the same deterministic PIL geometry as the images (:func:`~zfnet_exp.data.transforms.eval_geometry`,
nearest interpolation: a tensor ``tv_tensors.Mask`` resize samples pixel centres differently from PIL and
would shift mask edges by a pixel against the image), and points as ``tv_tensors.KeyPoints`` through the
same resize/crops in ``torchvision.transforms.v2`` (:func:`map_points`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ..utils.tensors import unwrap_subset
from .folder import IndexedImageFolder
from .transforms import eval_geometry, resize_for


def base_folder(dataset: Dataset) -> IndexedImageFolder:
    """The IndexedImageFolder under (nested) Subsets; dataset items carry *its* indices."""
    dataset = unwrap_subset(dataset)
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
        raise FileNotFoundError(
            f"no mask for {folder.samples[index][0]} (expected {path}); masks exist for the "
            "generated shapes dataset only"
        )
    m = eval_geometry(crop_size)(Image.open(path).convert("L"))
    return torch.from_numpy(np.asarray(m) > 127)


def eval_keypoint_geometry(crop_size: int):
    """The eval geometry (:func:`~zfnet_exp.data.transforms.eval_geometry`: resize the shorter side, centre
    square, centre crop) as a ``torchvision.transforms.v2`` pipeline, which moves ``tv_tensors.KeyPoints``
    with the same sizes and crop offsets as the images (torchvision's own box/point geometry, not ours)."""
    from torchvision.transforms import v2

    size = resize_for(crop_size)
    return v2.Compose([v2.Resize(size), v2.CenterCrop(size), v2.CenterCrop(crop_size)])


def map_points(points, orig_size: tuple[int, int], crop_size: int) -> Tensor:
    """Annotation points ``[N, 2]`` (x, y) in original pixels (``orig_size`` = (w, h)) -> (x, y) in the
    network input, float64. Points may fall outside the crop (negative or >= crop_size)."""
    from torchvision import tv_tensors

    w, h = orig_size
    kp = tv_tensors.KeyPoints(torch.as_tensor(points, dtype=torch.float64).reshape(-1, 2), canvas_size=(h, w))
    return eval_keypoint_geometry(crop_size)(kp).as_subclass(Tensor).double()


def map_point(xy, orig_size: tuple[int, int], crop_size: int) -> tuple[float, float]:
    """One annotation point (x, y) in original pixels -> (x, y) in the network input (:func:`map_points`)."""
    x, y = map_points([xy], orig_size, crop_size)[0].tolist()
    return x, y


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
    names = list(ann.get("keypoints", {}))
    mapped = map_points([ann["keypoints"][k] for k in names], size, crop_size).tolist() if names else []
    out["keypoints"] = dict(zip(names, mapped))
    return out


__all__ = [
    "base_folder",
    "eval_keypoint_geometry",
    "load_mask",
    "map_point",
    "map_points",
    "mapped_annotation",
    "mask_path",
]
