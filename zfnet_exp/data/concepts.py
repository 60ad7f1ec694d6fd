"""Concept masks of the embedded ``shapes`` data, derived from what the generator drew.

Why replay instead of files: every image is drawn from its own RNG seeded by (seed, split, index), so calling
:func:`~zfnet_exp.data.shapes.render` again with a ``trace`` dict reproduces the image bit for bit *and*
records what it drew (texture kind, object colour, clean background, where clutter went). The generated folders
therefore stay exactly as they were (no new files, no generator version change: a test pins the images), and
any existing cache gets concept masks.

The concept list (:data:`SHAPES_CONCEPTS`, category in brackets), at the drawn image's pixels:

- [object] each shape class (the object mask, ``alpha >= 0.5``, as the saved mask);
- [part] a disc of radius ``PART_RADIUS`` x the object radius around each named keypoint, inside the object,
  merged over a class's numbered keypoints: "arrow tip", "arrow tail", "star tip", "crescent horn", ...
  (the ring's centre keypoint lies in its hole and is not a part);
- [edge] "outline": the band of pixels within ``EDGE_HALF_WIDTH`` x the image side of the object boundary
  (dilation minus erosion of the object mask);
- [texture] the object's texture kind ("solid", "stripes", "checker", "noise", "gradient") on the object;
- [colour] the 11 basic colour terms (Berlin & Kay), nearest prototype in RGB (:data:`COLOUR_TERMS`): the
  object's pixels all take the name of its drawn base colour (the texture modulates it by a few percent), each
  background pixel the name of its clean colour (gradient with clutter blended in, before noise and blur);
- [clutter] "clutter stroke", "clutter blob": background distractors, outside the object.

Only the object and part concepts depend on the class: the generator draws position, size, rotation, background,
clutter, colour and texture with the same RNG calls whatever the class (a test renders one seed as every class).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError
from .shapes import GENERATOR_VERSION, SHAPE_CLASSES, TEXTURE_KINDS, ShapesSpec, _canonical, image_seed, render
from .transforms import eval_geometry

CATEGORIES = ("object", "part", "edge", "texture", "colour", "clutter")
PART_RADIUS = 0.3
EDGE_HALF_WIDTH = 0.02  # of the image side: 1.5 px at the default 73 px drawing, rounded to 1 iteration
COLOUR_TERMS = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "yellow": (255, 255, 0),
    "blue": (0, 0, 255),
    "brown": (139, 69, 19),
    "orange": (255, 165, 0),
    "pink": (255, 192, 203),
    "purple": (128, 0, 128),
    "grey": (128, 128, 128),
}


def part_name(cls: str, keypoint: str) -> str | None:
    """``("star", "tip3")`` -> "star tip", ``("cross", "arm_left")`` -> "cross arm"; None for a keypoint off the
    object (the ring's centre lies in its hole)."""
    if cls == "ring" and keypoint == "center":
        return None
    stem = re.sub(r"\d+$", "", keypoint.split("_")[0])  # tip3 -> tip, arm_top -> arm: corresponding parts merge
    return f"{cls} {stem}"


def _parts() -> list[str]:
    names = []
    for cls in SHAPE_CLASSES:
        for kp in _canonical(cls)[2]:
            name = part_name(cls, kp)
            if name and name not in names:
                names.append(name)
    return names


@dataclass(frozen=True)
class ConceptList:
    names: tuple[str, ...]
    categories: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)


SHAPES_CONCEPTS = ConceptList(
    names=(*SHAPE_CLASSES, *_parts(), "outline", *TEXTURE_KINDS, *COLOUR_TERMS, "clutter stroke", "clutter blob"),
    categories=(
        *["object"] * len(SHAPE_CLASSES),
        *["part"] * len(_parts()),
        "edge",
        *["texture"] * len(TEXTURE_KINDS),
        *["colour"] * len(COLOUR_TERMS),
        "clutter",
        "clutter",
    ),
)


def name_colours(rgb: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` (0..255) -> ``[H, W]`` index into :data:`COLOUR_TERMS` (nearest prototype in RGB)."""
    protos = np.asarray(list(COLOUR_TERMS.values()), dtype=np.float32)
    d = ((rgb[..., None, :].astype(np.float32) - protos) ** 2).sum(-1)
    return d.argmin(-1)


def shapes_concept_masks(spec: ShapesSpec, split: str, index: int, label: int) -> np.ndarray:
    """``[K, S, S]`` bool masks of :data:`SHAPES_CONCEPTS` for image ``index`` of ``split`` (class ``label``) at
    the drawn size ``S = spec.image_size``, by replaying the generator (module docstring)."""
    trace: dict = {}
    _, _, ann = render(spec, label, np.random.default_rng(image_seed(spec.seed, split, index)), trace)
    return concept_masks_from_trace(spec, ann, trace)


def concept_masks_from_trace(spec: ShapesSpec, ann: dict, trace: dict) -> np.ndarray:
    size = spec.image_size
    names = SHAPES_CONCEPTS.names
    out = np.zeros((len(names), size, size), dtype=bool)
    obj = trace["alpha"] >= 0.5
    cls = ann["class"]
    out[names.index(cls)] = obj
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = PART_RADIUS * ann["radius"]
    for kp, (x, y) in ann["keypoints"].items():
        name = part_name(cls, kp)
        if name:
            out[names.index(name)] |= ((xx - x) ** 2 + (yy - y) ** 2 <= r * r) & obj
    it = max(1, round(EDGE_HALF_WIDTH * size))
    out[names.index("outline")] = ndimage.binary_dilation(obj, iterations=it) & ~ndimage.binary_erosion(
        obj, iterations=it, border_value=0
    )
    out[names.index(trace["texture"])] = obj
    colours = name_colours(trace["clean"])  # the background per pixel (gradient with clutter blended in)
    colours[obj] = name_colours(np.asarray(trace["object_colour"])[None, None])[0, 0]  # the object: its base colour
    for i, term in enumerate(COLOUR_TERMS):
        out[names.index(term)] = colours == i
    out[names.index("clutter stroke")] = (trace["clutter"] == 1) & ~obj
    out[names.index("clutter blob")] = (trace["clutter"] == 2) & ~obj
    return out


LABEL_CHANNELS = 8  # label maps per image: more than any pixel's concepts (object, 2 parts, outline, texture, ...)


def label_maps(masks: Tensor, channels: int = LABEL_CHANNELS) -> Tensor:
    """``[K, H, W]`` bool -> ``[channels, H, W]`` int16 label maps (value k + 1 for concept k, 0 none): a
    pixel's j-th concept goes to map j, so any overlap up to ``channels`` concepts per pixel is kept exactly
    (the form :func:`~zfnet_exp.diagnostics.dissect.dissect_batches` counts fastest)."""
    depth = masks.to(torch.int16).cumsum(0)  # a concept pixel's rank among the concepts at that pixel (1-based)
    if masks.numel() and int(depth[-1].max()) > channels:
        raise ValueError(f"a pixel carries {int(depth[-1].max())} concepts, more than {channels} label maps hold")
    k, y, x = masks.nonzero(as_tuple=True)
    out = torch.zeros(channels, *masks.shape[1:], dtype=torch.int16)
    out[depth[k, y, x].long() - 1, y, x] = (k + 1).to(torch.int16)
    return out


def shapes_spec_of(root: str | Path) -> ShapesSpec:
    """The generator parameters of a generated folder (its ``meta.json``); a DataError for any other folder."""
    meta = Path(root) / "meta.json"
    if not meta.is_file():
        raise DataError(
            f"{root} is not a generated shapes folder (no meta.json), so its concept masks cannot be derived. "
            f"Pass the checkpoint's own shapes data (concepts=shapes with images=val or train) or use "
            f"concepts=voc / concepts=broden with a concepts_root."
        )
    record = json.loads(meta.read_text())
    if record.get("version") != GENERATOR_VERSION:
        raise DataError(
            f"{root} was generated by shapes generator version {record.get('version')}, this code draws version "
            f"{GENERATOR_VERSION}; its concept masks cannot be replayed. Delete the folder to regenerate it."
        )
    return ShapesSpec(**record["spec"])


class ShapesConcepts(Dataset):
    """Items ``(image, masks [K, m, m] bool, i)`` of generated images ``files`` (``<root>/<split>/<class>/<index>.png``,
    drawn with ``spec``): the image as ``transform`` makes it from the PNG (the network's eval crop and
    normalization), the masks of :data:`SHAPES_CONCEPTS` through the same eval geometry to ``crop_size``, then
    nearest-resized to ``mask_size`` (default: the crop). Masks are computed on first access and kept."""

    concepts = SHAPES_CONCEPTS

    def __init__(
        self,
        files: Sequence[str | Path],
        spec: ShapesSpec,
        crop_size: int,
        transform=None,
        mask_size: int | None = None,
        cache: bool = True,
    ):
        self.files, self.spec = [Path(f) for f in files], spec
        self.crop_size, self.mask_size = int(crop_size), int(mask_size or crop_size)
        self.transform = transform
        self.geometry = eval_geometry(self.crop_size)
        self._cache: dict[int, Tensor] | None = {} if cache else None

    @classmethod
    def from_folder(cls, root: str | Path, split: str, crop_size: int, **kwargs) -> ShapesConcepts:
        """Every image of ``split`` of the generated folder ``root``, in ImageFolder order (class folders, then
        file names), so item i is item i of the training run's split."""
        spec = shapes_spec_of(root)
        files = sorted(Path(root, split).glob("*/*.png"))
        if not files:
            raise DataError(f"{Path(root, split)} holds no images.")
        return cls(files, spec, crop_size, **kwargs)

    def __len__(self) -> int:
        return len(self.files)

    def masks(self, i: int) -> Tensor:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        path = self.files[i]
        label = SHAPE_CLASSES.index(path.parent.name)
        split = path.parent.parent.name
        m = torch.from_numpy(shapes_concept_masks(self.spec, split, int(path.stem), label))
        m = self.geometry(m.to(torch.uint8))
        if self.mask_size != self.crop_size:
            m = torch.nn.functional.interpolate(m[None].float(), size=self.mask_size, mode="nearest")[0]
        m = m.bool()
        if self._cache is not None:
            self._cache[i] = m
        return m

    def __getitem__(self, i: int):
        with Image.open(self.files[i]) as im:
            image = im.convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, self.masks(i), i


__all__ = [
    "CATEGORIES",
    "COLOUR_TERMS",
    "SHAPES_CONCEPTS",
    "ConceptList",
    "ShapesConcepts",
    "concept_masks_from_trace",
    "label_maps",
    "name_colours",
    "part_name",
    "shapes_concept_masks",
    "shapes_spec_of",
]
