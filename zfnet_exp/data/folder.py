"""ImageFolder datasets that also return the dataset index and explain layout problems in plain words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from PIL import Image, UnidentifiedImageError
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from ..errors import DataError

LAYOUT_HELP = (
    "Expected an ImageFolder layout: ROOT/train/<class>/<image>.jpg and ROOT/val/<class>/<image>.jpg, "
    "one sub-folder per class with the same class names in both splits (ImageNet: the 1000 synset folders)."
)


def _load_rgb(path: str) -> Image.Image:
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(
            f"Cannot read image {path}: {e}. The file is corrupt or not an image; delete or replace it "
            f"(or move it out of the dataset folder) and run again."
        ) from None


class IndexedImageFolder(ImageFolder):
    """``ImageFolder`` whose items are ``(image, label, index)``: diagnostics need to know which image a
    batch element is (top-9 mining, probe images) even when a DistributedSampler shuffles the shards."""

    def __init__(self, root: str | Path, transform: Callable | None = None):
        check_split_folder(Path(root))
        super().__init__(str(root), transform=transform, loader=_load_rgb)

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        image, label = super().__getitem__(index)
        return image, label, index

    def annotation(self, index: int) -> dict | None:
        """The JSON sidecar of an image (the shapes dataset writes one), or None."""
        sidecar = Path(self.samples[index][0]).with_suffix(".json")
        return json.loads(sidecar.read_text()) if sidecar.is_file() else None


def check_split_folder(split_dir: Path) -> None:
    root = split_dir.parent
    if not root.exists():
        raise DataError(f"Dataset folder {root} does not exist. Set data.root to the folder that holds your "
                        f"dataset. {LAYOUT_HELP}")
    if not split_dir.is_dir():
        found = sorted(p.name for p in root.iterdir())[:8]
        raise DataError(f"Dataset folder {root} has no '{split_dir.name}' sub-folder (found: {found or 'nothing'}). "
                        f"{LAYOUT_HELP}")
    classes = [p for p in split_dir.iterdir() if p.is_dir()]
    if not classes:
        raise DataError(f"{split_dir} has no class sub-folders. {LAYOUT_HELP}")
    if not any(f.suffix.lower() in IMG_EXTENSIONS for c in classes for f in c.iterdir()):
        raise DataError(f"{split_dir} has class folders but no images ({', '.join(IMG_EXTENSIONS)}). {LAYOUT_HELP}")
