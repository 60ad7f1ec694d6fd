"""Conversions between tensors/arrays and PIL images for figures."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def to_pil(image) -> Image.Image:
    """A PIL image from a PIL image, a [3|1,H,W] / [H,W] tensor in [0, 1], or an HWC uint8/float array."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
        if t.ndim == 3 and t.shape[0] in (1, 3):
            t = t.permute(1, 2, 0)
        arr = (t.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    else:
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    return Image.fromarray(arr)
