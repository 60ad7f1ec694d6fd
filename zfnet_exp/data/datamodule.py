"""Lightning datamodules: a generic ImageFolder one (ImageNet in its standard folder layout, or any
dataset) and the embedded, generated ``shapes`` one, which goes through the very same loading code."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from ..errors import DataError, UserError
from .folder import IndexedImageFolder, check_split_folder
from .normalize import NORMALIZATIONS, Normalizer
from .sampling import ClassBalancedSampler
from .shapes import SHAPE_CLASSES, ShapesSpec, generate_shapes
from .stats import channel_stats
from .transforms import eval_transform, resize_for, train_transform

DATA_STATE_KEY = "zfnet_data"  # marks the datamodule's entry in a checkpoint (its value: the format version)
DATA_STATE_VERSION = 2


def data_state(checkpoint: dict) -> dict:
    """The datamodule state a checkpoint holds (Lightning stores ``datamodule.state_dict()`` under the class
    name, which the offline tasks do not know): normalization record, ``image_size``, ``classes``, ``root``.
    Checkpoints written before the datamodule carried its own state kept it under ``zfnet_data``."""
    for value in checkpoint.values():
        if isinstance(value, dict) and DATA_STATE_KEY in value:
            return value
    legacy = checkpoint.get(DATA_STATE_KEY)
    return dict(legacy) if isinstance(legacy, dict) else {}


class ImageFolderDataModule(L.LightningDataModule):
    """``root/train/<class>/*`` and ``root/val/<class>/*``; items are ``(uint8 image, label, dataset_index)``.

    Batches stay ``uint8`` until they reach the device; :attr:`normalizer` turns them into network inputs
    there (``on_after_batch_transfer``), and its record travels in :meth:`state_dict` (hence in every
    checkpoint), so offline tasks feed images exactly as training did. Diagnostics that read ``val_set`` /
    ``train_set`` directly go through :func:`zfnet_exp.data.normalize.normalized_split`.

    ``batch_size`` is the *global* batch (the paper's 128): under DDP each of the N processes loads
    ``batch_size / N`` so a recipe means the same thing on 1 or 8 GPUs. ``balanced_batches`` makes every
    training batch hold the same number of images of each class (see ``data.sampling`` for why that matters
    to a BatchNorm-free network's first steps). ``mean``/``std`` default to statistics
    computed from the training split (cached under ``cache_dir``).
    """

    name = "imagefolder"

    def __init__(
        self,
        root: str | None = None,
        image_size: int = 224,
        batch_size: int = 128,
        num_workers: int = 4,
        normalization: str = "standard",
        mean: list[float] | None = None,
        std: list[float] | None = None,
        cache_dir: str | None = None,
        pin_memory: bool = True,
        num_classes: int | None = None,
        balanced_batches: bool = False,
        persistent_workers: bool = True,
        prefetch_factor: int | None = 4,
        channels_last: bool = False,
    ):
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise DataError(
                f"data.normalization={normalization!r} is not valid; choose one of {', '.join(NORMALIZATIONS)}."
            )
        self.root = Path(root).expanduser() if root else None
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.normalization = normalization
        self.mean, self.std = mean, std
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.prefetch_factor = prefetch_factor
        self.channels_last = channels_last
        self._num_classes = num_classes
        self.balanced_batches = balanced_batches
        self.train_set: IndexedImageFolder | None = None
        self.val_set: IndexedImageFolder | None = None
        self.normalizer: Normalizer | None = None

    # -- properties the train task and diagnostics read
    @property
    def num_classes(self) -> int:
        if self.train_set is not None:
            return len(self.train_set.classes)
        if self._num_classes is None:
            raise RuntimeError("num_classes is known after setup()")
        return self._num_classes

    @property
    def classes(self) -> list[str]:
        assert self.train_set is not None, "call setup() first"
        return list(self.train_set.classes)

    def _require_root(self) -> Path:
        if self.root is None:
            raise DataError("data.root is not set. Pass data.root=/path/to/dataset on the command line. "
                            "Expected an ImageFolder layout: ROOT/train/<class>/*.jpg and ROOT/val/<class>/*.jpg.")
        return self.root

    def _stats(self) -> tuple[list[float], list[float]]:
        if self.mean is not None and self.std is not None:
            return list(self.mean), list(self.std)
        root = self._require_root()
        meta = root / "meta.json"
        if meta.is_file():
            m = json.loads(meta.read_text())
            if "mean" in m and "std" in m:
                return m["mean"], m["std"]
        cache = None
        if self.cache_dir is not None:
            key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
            cache = self.cache_dir / "stats" / f"{key}.json"
            if cache.is_file():
                m = json.loads(cache.read_text())
                return m["mean"], m["std"]
        files = [p for p, _ in IndexedImageFolder(root / "train").samples]
        mean, std = channel_stats(files)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({"root": str(root), "mean": mean, "std": std}))
        return mean, std

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        root = self._require_root()
        check_split_folder(root / "train")
        check_split_folder(root / "val")
        if self.normalizer is None:  # load_state_dict (resume) may have restored it already
            self.mean, self.std = self._stats()
            self._build_normalizer()
        self.train_set = IndexedImageFolder(root / "train", train_transform(self.image_size))
        self.val_set = IndexedImageFolder(root / "val", eval_transform(self.image_size))
        if self.train_set.classes != self.val_set.classes:
            missing = sorted(set(self.train_set.classes) ^ set(self.val_set.classes))[:5]
            raise DataError(f"{root}: train and val have different class folders (e.g. {missing}); both splits need "
                            f"the same class sub-folders.")
        if self._num_classes is not None and self._num_classes != len(self.train_set.classes):
            raise DataError(f"data.num_classes={self._num_classes} but {root / 'train'} has "
                            f"{len(self.train_set.classes)} class folders; fix data.num_classes or set it to null.")

    def _per_device_batch(self) -> int:
        world = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world:
            raise DataError(f"data.batch_size={self.batch_size} is the global batch and must divide by the "
                            f"{world} processes; choose a multiple of {world}.")
        return self.batch_size // world

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        sampler = None
        if shuffle and self.balanced_batches:
            world = self.trainer.world_size if self.trainer is not None else 1
            if world > 1:
                rank_zero_warn("data.balanced_batches is ignored under DDP (Lightning's distributed sampler "
                               "interleaves indices across ranks); batches are plainly shuffled.")
            else:
                sampler = ClassBalancedSampler(dataset.targets, seed=torch.initial_seed() % 2**31)
                shuffle = False
        workers = self.num_workers > 0
        return DataLoader(
            dataset,
            batch_size=self._per_device_batch(),
            shuffle=shuffle,
            sampler=sampler,
            # equal steps on every rank: training drops the last partial batch; validation keeps every image
            # (under DDP Lightning's DistributedSampler pads the ranks to equal length by repeating up to
            # world_size - 1 images, so every rank runs the same number of validation steps)
            drop_last=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.persistent_workers and workers,
            prefetch_factor=self.prefetch_factor if workers else None,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    # -- normalization on the device, and the state a checkpoint carries
    def _build_normalizer(self) -> None:
        self.normalizer = Normalizer(self.mean, self.std, self.normalization, channels_last=self.channels_last)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """uint8 images -> normalized float on the device (the first element of the batch)."""
        if self.normalizer is None or not isinstance(batch, (list, tuple)) or not torch.is_tensor(batch[0]):
            return batch
        return type(batch)([self.normalizer(batch[0]), *batch[1:]])

    def normalization_params(self) -> dict:
        """The normalization record (``Normalizer.record()``): what a figure needs to show network inputs."""
        return self.normalizer.record()

    def state_dict(self) -> dict:
        """Saved by Lightning in every checkpoint: what offline tasks need to feed images as training did."""
        if self.normalizer is None:
            return {}
        return {
            DATA_STATE_KEY: DATA_STATE_VERSION,
            **self.normalizer.record(),
            "image_size": self.image_size,
            "classes": self.classes if self.train_set is not None else None,
            "root": str(self.root) if self.root else None,
        }

    def load_state_dict(self, state: dict) -> None:
        """On resume: keep normalizing with the statistics the run started with."""
        if state.get("mean") is not None:
            self.mean, self.std = state["mean"], state.get("std")
            self.normalization = state.get("normalization", self.normalization)
            self._build_normalizer()


class ShapesDataModule(ImageFolderDataModule):
    """The embedded dataset: generated once per parameter set into ``cache_dir/shapes-<hash>`` (images are
    drawn at the resize size of the paper transforms, with the object always inside the training crop)."""

    name = "shapes"

    def __init__(
        self,
        cache_dir: str,
        image_size: int = 112,
        train_per_class: int = 400,
        val_per_class: int = 50,
        seed: int = 0,
        min_radius: float = ShapesSpec.min_radius,
        max_radius: float = ShapesSpec.max_radius,
        generate_workers: int | None = None,
        **kwargs,
    ):
        super().__init__(root=None, image_size=image_size, cache_dir=cache_dir, **kwargs)
        if not 0 < min_radius <= max_radius <= 0.5 * image_size / resize_for(image_size):
            raise UserError(
                f"data.min_radius={min_radius} / data.max_radius={max_radius} are not a valid object size: the "
                f"radius is a fraction of the drawn image side and the object must fit inside the "
                f"{image_size}-px training crop, so 0 < min_radius <= max_radius <= "
                f"{0.5 * image_size / resize_for(image_size):.3f}. Fix the two values in conf/data/shapes.yaml "
                f"or on the command line."
            )
        self.spec = ShapesSpec(
            image_size=resize_for(image_size),
            train_per_class=train_per_class,
            val_per_class=val_per_class,
            seed=seed,
            safe_size=image_size,
            min_radius=min_radius,
            max_radius=max_radius,
        )
        self.generate_workers = generate_workers

    @property
    def num_classes(self) -> int:
        return len(SHAPE_CLASSES)

    def prepare_data(self) -> None:
        self.root = generate_shapes(self.cache_dir, self.spec, workers=self.generate_workers)

    def setup(self, stage: str | None = None) -> None:
        if self.root is None:
            self.prepare_data()  # every rank resolves the (already generated) folder
        super().setup(stage)
