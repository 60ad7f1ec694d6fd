"""A dataset from a list of ``(path, target)`` samples, for layouts that are not ImageFolder (Caltech, PASCAL VOC).

Items are ``(image, target, index)`` like every dataset of this package. Images are read by the package's one
image reader (``folder._load_rgb``: greyscale and CMYK JPEGs become RGB) and, with the package's transforms
(``data.transforms``), stay uint8 ``[3,H,W]`` until they reach the device, where the consumer normalizes them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from .folder import _load_rgb

IMAGE_SUFFIXES = frozenset(IMG_EXTENSIONS)


class SampleListDataset(Dataset):
    def __init__(self, samples: Sequence[tuple[str, Any]], classes: Sequence[str], transform: Callable | None = None):
        self.samples = list(samples)
        self.classes = list(classes)
        self.transform = transform

    @property
    def targets(self) -> list:
        return [t for _, t in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, Any, int]:
        path, target = self.samples[index]
        image = _load_rgb(path)
        if self.transform is not None:
            image = self.transform(image)
        if isinstance(target, torch.Tensor):
            target = target.clone()
        return image, target, index

    def with_transform(self, transform: Callable | None) -> SampleListDataset:
        """The same samples read with another transform (e.g. training augmentation)."""
        other = copy.copy(self)
        other.transform = transform
        return other

    def subset(self, indices, transform: Callable | None = None) -> SampleListDataset:
        """A dataset of the given samples only (indices renumbered from 0, so an item's index points into it),
        read with ``transform`` (None: this dataset's)."""
        other = self.with_transform(self.transform if transform is None else transform)
        other.samples = [self.samples[int(i)] for i in indices]
        return other
