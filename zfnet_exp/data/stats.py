"""Per-channel pixel statistics of a training split, for mean subtraction."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def channel_stats(files: Sequence[str | Path], max_images: int = 2000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units over an evenly spaced subset of at most ``max_images`` files
    (pixel-weighted, so large images count more, as a per-pixel mean over the dataset would)."""
    if not files:
        raise ValueError("no images to compute channel statistics from")
    files = list(files)[:: max(1, len(files) // max_images)]
    acc = np.zeros(3)
    acc2 = np.zeros(3)
    count = 0
    for f in files:
        with Image.open(f) as im:
            a = np.asarray(im.convert("RGB"), dtype=np.float64).reshape(-1, 3) / 255.0
        acc += a.sum(0)
        acc2 += (a**2).sum(0)
        count += a.shape[0]
    mean = acc / count
    std = np.sqrt(np.maximum(acc2 / count - mean**2, 1e-12))
    return mean.round(6).tolist(), std.round(6).tolist()
