"""``data`` group: the datamodules' options (conf/data/*.yaml), checked before any image is read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from ..data.folder import MAX_SKIPPED_FILES, MAX_SKIPPED_FRACTION
from ..data.normalize import NORMALIZATIONS
from ..data.shapes import ShapesSpec
from .base import FieldError, at_least, between, one_of


@dataclass
class ImageFolderData:
    """``zfnet_exp.data.ImageFolderDataModule`` (and ``data=imagenet``)."""

    _target_: str = "zfnet_exp.data.ImageFolderDataModule"
    root: str = MISSING
    image_size: int = 224
    batch_size: int = 128
    num_workers: int = 4
    normalization: str = "standard"
    mean: list[float] | None = None
    std: list[float] | None = None
    cache_dir: str | None = None
    pin_memory: bool = True
    num_classes: int | None = None
    balanced_batches: bool = False
    persistent_workers: bool = True
    prefetch_factor: int | None = 4
    channels_last: bool = False
    mean_image: bool = False
    stats_images: int | None = 2000
    strict: bool = False
    skip_dir: str | None = None
    backend: str = "default"
    # unreadable files of one split that stop the run (zfnet_exp.data.folder: one source for the defaults)
    max_skipped_fraction: float = MAX_SKIPPED_FRACTION
    max_skipped_files: int = MAX_SKIPPED_FILES

    def __post_init__(self) -> None:
        from ..data.backends import BACKENDS

        one_of(self, "backend", BACKENDS)
        between(self, "max_skipped_fraction", 0.0, 1.0)
        at_least(self, "max_skipped_files", 0)
        at_least(self, "prefetch_factor", 1)
        at_least(self, "stats_images", 1)
        # the 5-conv models need a conv5 map of at least 1x1 after three poolings
        at_least(self, "image_size", 64)
        at_least(self, "batch_size", 1)
        at_least(self, "num_workers", 0)
        at_least(self, "num_classes", 2)
        one_of(self, "normalization", NORMALIZATIONS)
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and len(value) != 3:
                raise FieldError(name, value, "three per-channel values [r, g, b] (or null: computed from train)")
        if self.std is not None and min(self.std) <= 0:
            raise FieldError("std", self.std, "positive standard deviations")


@dataclass
class ShapesData(ImageFolderData):
    """``zfnet_exp.data.ShapesDataModule``: the embedded generated dataset."""

    _target_: str = "zfnet_exp.data.ShapesDataModule"
    root: Any = None  # generated under cache_dir
    cache_dir: str = MISSING
    image_size: int = 112
    # the generator's own defaults (one source: zfnet_exp.data.shapes.ShapesSpec)
    train_per_class: int = ShapesSpec.train_per_class
    val_per_class: int = ShapesSpec.val_per_class
    seed: int = ShapesSpec.seed
    min_radius: float = ShapesSpec.min_radius
    max_radius: float = ShapesSpec.max_radius
    pixel_noise: float = ShapesSpec.pixel_noise
    blur_probability: float = ShapesSpec.blur_probability
    generate_workers: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pixel_noise < 0:
            raise FieldError("pixel_noise", self.pixel_noise, "a standard deviation >= 0 (0..255 pixel units)")
        if not 0.0 <= self.blur_probability <= 1.0:
            raise FieldError("blur_probability", self.blur_probability, "a probability in [0, 1]")
        at_least(self, "train_per_class", 1)
        at_least(self, "val_per_class", 1)
        at_least(self, "generate_workers", 1)
        # the radius range against the crop (depends on image_size) is checked by ShapesDataModule itself


@dataclass
class ImageNetData(ImageFolderData):
    """``zfnet_exp.data.ImageNetDataModule``."""

    _target_: str = "zfnet_exp.data.ImageNetDataModule"
    val_ground_truth: str | None = None


# by datamodule class (the targets in conf/data/ name them through the package, other paths reach the same class)
SCHEMAS = {"ImageFolderDataModule": ImageFolderData, "ShapesDataModule": ShapesData, "ImageNetDataModule": ImageNetData}
