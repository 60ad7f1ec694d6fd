"""The images an offline analysis looks at: evenly spaced items of the chosen split, and how to show them.

Shared by the occlusion, attribution, invariance and faithfulness analyses (one choice of images, the
same on every run).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ...data.normalize import denormalizer
from ...utils.tensors import evenly_spaced


def gather(dataset: Dataset, num: int | None) -> tuple[Tensor, Tensor, list[int]]:
    """(images [N,3,H,W], labels [N], dataset indices) of ``num`` evenly spaced items of ``dataset``."""
    if dataset is None:
        raise ValueError("this analysis needs images: pass images=val (or a folder)")
    xs, ys, idx = [], [], []
    for p in evenly_spaced(len(dataset), num):
        x, y, i = dataset[p]
        xs.append(x)
        ys.append(int(y))
        idx.append(int(i))
    return torch.stack(xs), torch.tensor(ys), idx


def display(ctx, x: Tensor) -> Tensor:
    """A normalized input back to [0, 1] RGB for figures."""
    return denormalizer(ctx.data)(x.detach().cpu())


__all__ = ["display", "gather"]
