"""Real image files for dataset fixtures: JPEGs in RGB, greyscale ("L") and CMYK (which PIL writes as Adobe
CMYK JPEGs, as some ImageNet files are), a truncated JPEG and a non-image file with an image name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def pattern(width: int, height: int, seed: int) -> np.ndarray:
    """A deterministic, non-constant RGB uint8 picture (so crops and means are distinguishable)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 3 + seed * 17) % 256, (y * 5 + seed * 29) % 256, ((x + y) * 2 + seed * 7) % 256], -1)
    return np.clip(base + rng.integers(-8, 9, base.shape), 0, 255).astype(np.uint8)


def write_image(path: Path, width: int = 48, height: int = 40, seed: int = 0, mode: str = "RGB") -> Path:
    """Write a JPEG (or PNG by suffix) in ``mode`` ("RGB", "L" greyscale, "CMYK")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(pattern(width, height, seed)).convert(mode)
    img.save(path, quality=95) if path.suffix.lower() in (".jpg", ".jpeg") else img.save(path)
    return path


def write_truncated_jpeg(path: Path, seed: int = 99) -> Path:
    """A real JPEG cut in half: PIL opens its header but fails decoding the pixels."""
    write_image(path, 64, 64, seed)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_not_an_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("<html>404 Not Found</html>\n")
    return path


def image_folder(root: Path, classes=("a", "b"), per_class: int = 3, splits=("train", "val"), ext=".jpg") -> Path:
    """``root/<split>/<class>/<k><ext>``; the first class's first image is greyscale, its second CMYK."""
    for s, split in enumerate(splits):
        for c, cls in enumerate(classes):
            for k in range(per_class):
                mode = "L" if (c, k) == (0, 0) else "CMYK" if (c, k) == (0, 1) else "RGB"
                write_image(
                    root / split / cls / f"{k}{ext}", 40 + 4 * k, 36 + 2 * c, seed=100 * s + 10 * c + k, mode=mode
                )
    return root
