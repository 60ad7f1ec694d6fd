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

import copy
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..utils.options import at_least, one_of, option_rules
from .datamodule import ImageFolderDataModule
from .folder import SampleList, SkipLog, is_image_file, layout_error
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


def layout_tree(variant: str) -> str:
    """The expected tree, shown by every layout error (``folder.layout_error``)."""
    cats, excluded = VARIANTS[variant]
    a, b = ("001.ak47", "002.american-flag") if variant == "256" else ("accordion", "airplanes")
    fa, fb = (
        ("001_0001.jpg  001_0002.jpg ...", "002_0001.jpg ...")
        if variant == "256"
        else ("image_0001.jpg  image_0002.jpg ...", "image_0001.jpg ...")
    )
    return (
        f"<data.root>/                (or data.root=<data.root>/{cats} itself)\n"
        f"└── {cats}/\n"
        f"    ├── {a}/   {fa}\n"
        f"    ├── {b}/   {fb}\n"
        f"    └── {excluded[0]}/   (not a class: excluded unless data.exclude=[])"
    )


def _error(problem: str, variant: str) -> DataError:
    return layout_error(problem, layout_tree(variant))


def find_categories_dir(root: str | Path, variant: str) -> Path:
    """The ``NNN_ObjectCategories`` folder under ``root`` (accepted: it, its parent, or ``root/caltech<variant>``
    as torchvision extracts it); a DataError showing the expected tree otherwise."""
    if variant not in VARIANTS:
        raise DataError(f"Caltech variant {variant!r} is not known; choose one of {', '.join(VARIANTS)}.")
    cats, _ = VARIANTS[variant]
    root = Path(root).expanduser()
    if not root.exists():
        raise _error(f"Dataset folder {root} does not exist.", variant)
    for candidate in (root, root / cats, root / f"caltech{variant}" / cats):
        if candidate.name == cats and candidate.is_dir():
            return candidate
    found = sorted(p.name for p in root.iterdir())[:8]
    raise _error(f"{root} has no {cats} folder (found: {found or 'nothing'}).", variant)


def derived(dataset: SampleList, indices=None, transform: Callable | None = None) -> SampleList:
    """A copy of ``dataset`` over the given samples only (indices renumbered from 0, so an item's index points
    into the copy) and/or read with another ``transform``; same skip log, strictness and class names."""
    other = copy.copy(dataset)
    if indices is not None:
        other.samples = [dataset.samples[int(i)] for i in indices]
        other.targets = [t for _, t in other.samples]
    if transform is not None:
        other.transform = transform
    return other


class CaltechDataset(SampleList):
    """Every image of every (non-excluded) class; items ``(image, label, index)``, image as the transform
    returns it (uint8 [3,H,W] with ``data.transforms``). ``classes`` are the folder names, ``class_names`` the
    human-readable names. Unreadable files are skipped and counted (``strict``: an error naming the file)."""

    def __init__(
        self,
        root: str | Path,
        variant: str = "101",
        exclude: Sequence[str] | None = None,
        transform: Callable | None = None,
        *,
        strict: bool = False,
        skip_log: SkipLog | None = None,
        draft_size: int | None = None,
    ):
        variant = str(variant)
        cats_dir = find_categories_dir(root, variant)
        exclude = set(VARIANTS[variant][1] if exclude is None else exclude)
        folders = sorted(p.name for p in cats_dir.iterdir() if p.is_dir() and p.name not in exclude)
        samples: list[tuple[str, int]] = []
        for label, folder in enumerate(folders):
            files = sorted(f for f in (cats_dir / folder).iterdir() if f.is_file() and is_image_file(f))
            samples += [(str(f), label) for f in files]
        if not samples:
            raise _error(f"{cats_dir} holds no images in class folders.", variant)
        self.variant = variant
        super().__init__(
            samples,
            folders,
            transform,
            class_names=[class_name(f) for f in folders],
            strict=strict,
            skip_log=skip_log,
            draft_size=draft_size,
            root=cats_dir,
        )


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


@option_rules(variant=one_of(("101", "256")), per_class=at_least(1), test_per_class=at_least(1))
class CaltechDataModule(ImageFolderDataModule):
    """Caltech-101/256 as a datamodule.

    transfer.py uses :meth:`scan` (``dataset``: every image, eval geometry, for feature extraction) and
    :meth:`split`; train.py uses the usual loaders over split ``split_seed`` with ``per_class`` training images
    per class (its "val" = that split's test images), uint8 batches normalized on the device with the training
    images' statistics. Unreadable files are skipped and counted like everywhere (``data.strict``)."""

    def __init__(
        self,
        root: str | None = None,
        variant: str = "101",
        exclude: Sequence[str] | None = None,
        image_size: int = 224,
        per_class: int = 30,
        test_per_class: int | None = 50,
        split_seed: int = 0,
        **kwargs,
    ):
        if root is None:
            raise _error("data.root is not set.", str(variant))
        super().__init__(root=root, image_size=image_size, **kwargs)
        self.variant = str(variant)
        self.layout_tree = layout_tree(self.variant)
        self.exclude = None if exclude is None else list(exclude)
        self.per_class, self.test_per_class, self.split_seed = int(per_class), test_per_class, int(split_seed)
        self.dataset: CaltechDataset | None = None

    name = property(lambda self: f"caltech{self.variant}")

    def scan(self) -> CaltechDataset:
        """Every image of the dataset (a wrong layout is a DataError here, before anything is built)."""
        if self.dataset is None:
            self.dataset = CaltechDataset(
                self.root, self.variant, self.exclude, eval_transform(self.image_size), **self._split_kwargs()
            )
        return self.dataset

    @property
    def classes(self) -> list[str]:
        return self.scan().class_names

    @property
    def class_ids(self) -> list[str]:
        return list(self.scan().classes)

    @property
    def num_classes(self) -> int:
        return len(self.scan().classes)

    def split(self, seed: int, per_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        ds = self.scan()
        return protocol_split(ds.targets, per_class or self.per_class, self.test_per_class, seed, ds.class_names)

    def augmented(self, indices) -> SampleList:
        """The given images with the paper's training augmentation (random crop + flip)."""
        return derived(self.scan(), indices, train_transform(self.image_size))

    def build_splits(self) -> tuple[SampleList, SampleList]:
        train, test = self.split(self.split_seed)
        return derived(self.scan(), train), derived(self.scan(), test)
