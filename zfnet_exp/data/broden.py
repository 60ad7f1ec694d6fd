"""A Broden-layout folder (NetDissect-Lite's ``broden1_224`` / ``broden1_227``) as Network Dissection concepts.

Layout (what NetDissect-Lite's ``script/dlbroden.sh`` unpacks)::

    <root>/index.csv        image,split,ih,iw,sh,sw,<one column per category: color,object,part,material,scene,texture>
    <root>/label.csv        number,name,category,frequency,coverage,syns   (category e.g. "color(137);object(2)")
    <root>/category.csv     name,first,last,count,frequency
    <root>/c_<category>.csv code,number,name,frequency,coverage
    <root>/images/...       the images and the masks named in index.csv

A category cell holds ``;``-separated entries: a mask file name (a PNG at the segmentation size ``sh x sw`` whose
``R + 256 * G`` is the label number of each pixel, 0 for none) or a bare label number (an image-level label,
Broden's scene and texture: the whole image carries it, as in NetDissect). A label's category is the one
label.csv counts it most often in. Items are ``(image, labels [C, m, m] int64, i)``: one label map per entry
(padded with empty maps to the most entries of any image), values ``1 + position in concepts``, so a
thousand-concept dataset stays small in memory; masks go through the images' eval geometry (nearest).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError
from .folder import layout_error
from .transforms import eval_geometry

BRODEN_TREE = """\
<root>/                  (NetDissect-Lite's broden1_224 or broden1_227)
├── index.csv            image,split,ih,iw,sh,sw,color,object,part,material,scene,texture
├── label.csv            number,name,category,frequency,coverage,syns
├── category.csv         name,first,last,count,frequency
└── images/              <image> files and their masks (PNG, label = R + 256 * G)"""
INDEX_FIELDS = ("image", "split", "ih", "iw", "sh", "sw")


def _error(problem: str) -> DataError:
    return layout_error(problem, BRODEN_TREE)


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise _error(f"{path} does not exist.")
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def main_category(field: str) -> str:
    """``"color(137);object(2)"`` -> ``"color"`` (the category a label is counted in most often)."""
    counts = [(int(n), name) for name, n in re.findall(r"([A-Za-z_]+)\((\d+)\)", field)]
    if not counts:
        return field.strip() or "unknown"
    return max(counts)[1]


def decode_labels(path: Path) -> np.ndarray:
    """A Broden mask PNG -> ``[H, W]`` int64 label numbers (R + 256 * G)."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1]


class BrodenConcepts(Dataset):
    """The images of ``index.csv`` (``split``: only rows of that split; None: all) with their label maps."""

    def __init__(self, root, crop_size: int, transform=None, mask_size: int | None = None, split: str | None = None):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise _error(f"Broden folder {self.root} does not exist.")
        labels = [r for r in _rows(self.root / "label.csv") if int(r["number"]) > 0]
        categories = [r["name"] for r in _rows(self.root / "category.csv")]
        index = _rows(self.root / "index.csv")
        missing = [f for f in INDEX_FIELDS if index and f not in index[0]]
        if missing:
            raise _error(f"{self.root / 'index.csv'} lacks the column(s) {', '.join(missing)}.")
        self.category_columns = [c for c in categories if index and c in index[0]]
        if split is not None:
            index = [r for r in index if r["split"] == split]
        if not index:
            raise _error(f"{self.root / 'index.csv'} lists no images{f' of split {split}' if split else ''}.")
        self.concepts = [r["name"] for r in labels]
        self.categories = [main_category(r["category"]) for r in labels]
        numbers = [int(r["number"]) for r in labels]
        self.lut = np.zeros(max(numbers) + 1, dtype=np.int64)
        self.lut[numbers] = np.arange(1, len(numbers) + 1)
        self.index = index
        self.entries = [
            [e for c in self.category_columns for e in (row.get(c) or "").split(";") if e.strip()] for row in index
        ]
        self.channels = max(1, max(len(e) for e in self.entries))
        self.transform = transform
        self.geometry = eval_geometry(int(crop_size))
        self.mask_size = int(mask_size or crop_size)

    def __len__(self) -> int:
        return len(self.index)

    def _lookup(self, numbers: np.ndarray, where: str) -> np.ndarray:
        if numbers.max(initial=0) >= len(self.lut):
            raise DataError(f"{where} holds label {int(numbers.max())}, which label.csv does not list.")
        return self.lut[numbers]

    def __getitem__(self, i: int):
        row = self.index[i]
        sh, sw = int(row["sh"]), int(row["sw"])
        maps = np.zeros((self.channels, sh, sw), dtype=np.int64)
        for c, entry in enumerate(self.entries[i]):
            entry = entry.strip()
            if entry.isdigit():  # an image-level label: the whole image
                maps[c] = self._lookup(np.array([int(entry)]), f"{row['image']}'s index row")[0]
            else:
                path = self.root / "images" / entry
                if not path.is_file():
                    raise _error(f"index.csv names the mask {entry} but {path} does not exist.")
                decoded = decode_labels(path)
                if decoded.shape != (sh, sw):
                    raise DataError(f"{path} is {decoded.shape[1]}x{decoded.shape[0]}, index.csv says {sw}x{sh}.")
                maps[c] = self._lookup(decoded, str(path))
        labels = self.geometry(torch.from_numpy(maps))
        labels = torch.nn.functional.interpolate(labels[None].float(), size=self.mask_size, mode="nearest")[0].long()
        image_path = self.root / "images" / row["image"]
        if not image_path.is_file():
            raise _error(f"index.csv names the image {row['image']} but {image_path} does not exist.")
        with Image.open(image_path) as im:
            image = im.convert("RGB")
        return (self.transform(image) if self.transform else image), labels, i


__all__ = ["BRODEN_TREE", "BrodenConcepts", "decode_labels", "main_category"]
