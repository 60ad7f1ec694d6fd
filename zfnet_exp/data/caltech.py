"""Caltech-101 and Caltech-256 in their own folder layouts, and the paper's train/test protocol (Sec. 5.2).

Layouts (``data.root`` is the folder that holds the ``*_ObjectCategories`` folder, or that folder itself)::

    101_ObjectCategories/<class>/image_0001.jpg        (Caltech-101; BACKGROUND_Google is not a class)
    256_ObjectCategories/001.ak47/001_0001.jpg         (Caltech-256; 257.clutter is not a class)

We scan the folders ourselves rather than wrap ``torchvision.datasets.Caltech101/256``: those rebuild file
names from per-folder counts (one removed file, e.g. after the ImageNet-overlap removal the paper describes,
shifts every later name), return no dataset index, and are tied to their download step. Class order is the
sorted folder order (torchvision's too); class names are the folder names without the ``NNN.`` prefix.

Protocol (Fei-Fei et al. 2006 / Griffin et al. 2007, as the paper uses them): per split, ``per_class`` random
training images of every class and up to ``test_per_class`` (50) of the remaining ones for testing; the score is
the mean of per-class accuracies, reported as mean and standard deviation over 5 seeded splits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ..errors import DataError
from .samples import IMAGE_SUFFIXES, SampleListDataset
from .transforms import eval_transform, train_transform

VARIANTS = {
    # variant -> (categories folder, folders excluded by default)
    "101": ("101_ObjectCategories", ("BACKGROUND_Google",)),
    "256": ("256_ObjectCategories", ("257.clutter",)),
}
_NUMBERED = re.compile(r"^\d{3}\.")


def class_name(folder: str) -> str:
    """Human-readable name of a class folder: Caltech-256's ``NNN.`` prefix stripped (``001.ak47`` -> ``ak47``)."""
    return _NUMBERED.sub("", folder)


def _layout_help(variant: str) -> str:
    cats, _ = VARIANTS[variant]
    example = "001.ak47/001_0001.jpg" if variant == "256" else "accordion/image_0001.jpg"
    return (
        f"Expected the Caltech-{variant} layout: <data.root>/{cats}/<class folder>/<image>.jpg "
        f"(e.g. {cats}/{example}); set data.root to the folder that holds {cats} (or to {cats} itself)."
    )


def find_categories_dir(root: str | Path, variant: str) -> Path:
    """The ``NNN_ObjectCategories`` folder under ``root`` (accepted: it, its parent, or ``root/caltech<variant>``
    as torchvision extracts it); a DataError showing the expected tree otherwise."""
    if variant not in VARIANTS:
        raise DataError(f"Caltech variant {variant!r} is not known; choose one of {', '.join(VARIANTS)}.")
    cats, _ = VARIANTS[variant]
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"Dataset folder {root} does not exist. {_layout_help(variant)}")
    for candidate in (root, root / cats, root / f"caltech{variant}" / cats):
        if candidate.name == cats and candidate.is_dir():
            return candidate
    found = sorted(p.name for p in root.iterdir())[:8]
    raise DataError(f"{root} has no {cats} folder (found: {found or 'nothing'}). {_layout_help(variant)}")


class CaltechDataset(SampleListDataset):
    """Every image of every (non-excluded) class; items ``(image, label, index)``, image as the transform
    returns it (uint8 [3,H,W] with the default transforms of this package)."""

    def __init__(
        self,
        root: str | Path,
        variant: str = "101",
        exclude: Sequence[str] | None = None,
        transform: Callable | None = None,
    ):
        variant = str(variant)
        cats_dir = find_categories_dir(root, variant)
        exclude = set(VARIANTS[variant][1] if exclude is None else exclude)
        folders = sorted(p.name for p in cats_dir.iterdir() if p.is_dir() and p.name not in exclude)
        samples: list[tuple[str, int]] = []
        for label, folder in enumerate(folders):
            files = sorted(
                f for f in (cats_dir / folder).iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
            )
            samples += [(str(f), label) for f in files]
        if not samples:
            raise DataError(f"{cats_dir} holds no images in class folders. {_layout_help(variant)}")
        self.variant = variant
        self.folders = folders
        super().__init__(samples, [class_name(f) for f in folders], transform)


def protocol_split(
    targets: Sequence[int] | np.ndarray,
    per_class: int,
    test_per_class: int | None = 50,
    seed: int = 0,
    classes: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` of one random split: ``per_class`` training images of every class and up to
    ``test_per_class`` (None: all) of the others for testing.

    The split is a function of ``seed`` alone; for one seed, the training set for N is the first N of the
    same per-class permutation, so the sets of a sweep over N are nested (the Fig. 9 curve is smoother, and
    adding data never swaps images out)."""
    targets = np.asarray(targets)
    if per_class < 1:
        raise DataError(f"transfer.per_class={per_class}: need at least 1 training image per class.")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(targets):
        idx = rng.permutation(np.flatnonzero(targets == c))
        if len(idx) <= per_class:
            name = classes[c] if classes is not None else str(c)
            raise DataError(
                f"Class '{name}' has only {len(idx)} images, so {per_class} training images per class leave none "
                f"to test on. Lower transfer.per_class below {len(idx)} (the paper uses 15/30 on Caltech-101, "
                f"15-60 on Caltech-256) or exclude the class with data.exclude."
            )
        train.append(idx[:per_class])
        stop = None if test_per_class is None else per_class + test_per_class
        test.append(idx[per_class:stop])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


class CaltechDataModule(L.LightningDataModule):
    """Caltech-101/256 as a datamodule: ``dataset`` (every image, eval geometry) for feature extraction, and
    ``split(seed, per_class)`` for the protocol; the loaders serve split ``split_seed`` (uint8 batches)."""

    def __init__(
        self,
        root: str | None = None,
        variant: str = "101",
        exclude: Sequence[str] | None = None,
        image_size: int | None = 224,
        per_class: int = 30,
        test_per_class: int | None = 50,
        split_seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 4,
    ):
        super().__init__()
        if root is None:
            raise DataError(f"data.root is not set. Pass data.root=/path/to/caltech. {_layout_help(str(variant))}")
        self.root = Path(root).expanduser()
        self.variant = str(variant)
        self.exclude = None if exclude is None else list(exclude)
        self.image_size = None if image_size is None else int(image_size)
        self.per_class, self.test_per_class, self.split_seed = int(per_class), test_per_class, int(split_seed)
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.dataset: CaltechDataset | None = None

    name = property(lambda self: f"caltech{self.variant}")

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            if self.image_size is None:
                raise DataError("data.image_size is not set (transfer.py takes it from the checkpoint).")
            self.dataset = CaltechDataset(self.root, self.variant, self.exclude, eval_transform(self.image_size))

    @property
    def classes(self) -> list[str]:
        self.setup()
        return list(self.dataset.classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, seed: int, per_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        self.setup()
        return protocol_split(
            self.dataset.targets, per_class or self.per_class, self.test_per_class, seed, self.dataset.classes
        )

    def train_set(self, indices) -> Subset:
        """The training images of a split with the paper's augmentation (random crop + flip)."""
        return Subset(self.dataset.with_transform(train_transform(self.image_size)), list(indices))

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        train, _ = self.split(self.split_seed)
        return self._loader(self.train_set(train), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        _, test = self.split(self.split_seed)
        return self._loader(Subset(self.dataset, list(test)), shuffle=False)
