"""Lightning datamodules: a generic ImageFolder one (ImageNet in its standard folder layout, or any
dataset) and the embedded, generated ``shapes`` one, which goes through the very same loading code."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from ..errors import DataError, UserError
from ..utils.options import FieldError, at_least, between, one_of, option_rules
from .backends import BACKENDS, resolve_backend
from .backends.gpu_decode import EncodedImages, collate_encoded, decode_batch
from .folder import (
    IMAGEFOLDER_TREE,
    MAX_SKIPPED_FILES,
    MAX_SKIPPED_FRACTION,
    IndexedImageFolder,
    SkipLog,
    SkippingDataset,
    check_split_folder,
    layout_error,
)
from .normalize import NORMALIZATIONS, Normalizer
from .sampling import ClassBalancedSampler, ShuffleSampler
from .shapes import SHAPE_CLASSES, ShapesSpec, generate_shapes
from .stats import cached_statistics, subset
from .transforms import eval_transform, resize_for, train_transform

DATA_STATE_KEY = "zfnet_data"  # marks the datamodule's entry in a checkpoint (its value: the format version)
DATA_STATE_VERSION = 2


def data_state(checkpoint: dict) -> dict:
    """The datamodule state a checkpoint holds (Lightning stores ``datamodule.state_dict()`` under the class
    name, which the offline tasks do not know): normalization record, ``image_size``, ``classes``, ``root``."""
    for value in checkpoint.values():
        if isinstance(value, dict) and DATA_STATE_KEY in value:
            return value
    return {}


def _run_seed() -> int:
    """The run's seed (seed_everything's, inherited by DDP processes), not ``torch.initial_seed()``: the per-step
    reseeding (``callbacks.reproducible``) changes that one."""
    return int(os.environ.get("PL_GLOBAL_SEED", torch.initial_seed())) % 2**31


def _statistics(options) -> None:
    for name in ("mean", "std"):
        value = getattr(options, name)
        if value is not None and len(value) != 3:
            raise FieldError(name, value, "three per-channel values [r, g, b] (or null: computed from train)")
    if options.std is not None and min(options.std) <= 0:
        raise FieldError("std", options.std, "positive standard deviations")


@option_rules(
    _statistics,
    image_size=at_least(64),  # the 5-conv models need a conv5 map of at least 1x1 after three poolings
    batch_size=at_least(1),
    num_workers=at_least(0),
    num_classes=at_least(2),
    normalization=one_of(NORMALIZATIONS),
    prefetch_factor=at_least(1),
    stats_images=at_least(1),
    backend=one_of(BACKENDS),
    max_skipped_fraction=between(0.0, 1.0, "a fraction in [0, 1]"),
    max_skipped_files=at_least(0),
)
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
    computed from the training split (cached under ``cache_dir``); ``mean_image=True`` subtracts the paper's
    per-pixel mean image instead (computed once over ``stats_images`` training images, all if null).

    Unreadable images are skipped and replaced in their batch (``strict=True``: an error naming the file);
    :attr:`skipped_files` lists them, across DataLoader workers. Subclasses for other layouts override
    :meth:`build_splits` (and :attr:`layout_tree` for the error messages); everything else is shared.
    """

    name = "imagefolder"
    layout_tree = IMAGEFOLDER_TREE

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
        mean_image: bool = False,
        stats_images: int | None = 2000,
        strict: bool = False,
        skip_dir: str | None = None,
        backend: str = "default",
        max_skipped_fraction: float = MAX_SKIPPED_FRACTION,
        max_skipped_files: int = MAX_SKIPPED_FILES,
    ):
        super().__init__()
        self.root = Path(root).expanduser() if root else None
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.normalization = normalization
        self.mean, self.std = mean, std
        self.use_mean_image = bool(mean_image)
        self.mean_image: torch.Tensor | None = None  # [3, S, S] in [0, 1], S = resize_for(image_size)
        self.stats_images = stats_images
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.prefetch_factor = prefetch_factor
        self.channels_last = channels_last
        self.backend = backend  # resolved (gpu_decode -> default without CUDA) in setup()
        self._num_classes = num_classes
        self.balanced_batches = balanced_batches
        self.strict = bool(strict)
        self.skip_log = SkipLog(skip_dir, max_skipped_fraction, max_skipped_files)
        self.train_set: SkippingDataset | None = None
        self.val_set: SkippingDataset | None = None
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
        """Human-readable class names, index-aligned with the labels (what figures and tables show)."""
        assert self.train_set is not None, "call setup() first"
        return self.train_set.class_names

    @property
    def class_ids(self) -> list[str]:
        """The identifiers the labels index (folder names; WordNet ids for ImageNet)."""
        assert self.train_set is not None, "call setup() first"
        return list(self.train_set.classes)

    @property
    def skipped_files(self) -> dict[str, str]:
        """``{path: reason}`` of every unreadable file skipped so far (all DataLoader workers included)."""
        return self.skip_log.entries()

    def _require_root(self) -> Path:
        if self.root is None:
            raise layout_error("data.root is not set.", self.layout_tree)
        return self.root

    def _split_kwargs(self) -> dict:
        """What every dataset of this datamodule is built with: skipping policy, skip log, and the JPEG draft
        size (decode large JPEGs at a reduced DCT scale that is still >= the resize size)."""
        return {"strict": self.strict, "skip_log": self.skip_log, "draft_size": resize_for(self.image_size)}

    def build_splits(self) -> tuple[SkippingDataset, SkippingDataset]:
        """The training and validation datasets without transforms (labels, class names, file lists); raises
        a layout error (expected tree, config key) before anything else is built. Tasks that feed images
        their own way (``eval.py``'s 10 crops) call this instead of :meth:`setup`."""
        root = self._require_root()
        check_split_folder(root / "train", self.layout_tree)
        check_split_folder(root / "val", self.layout_tree)
        train = IndexedImageFolder(root / "train", tree=self.layout_tree, **self._split_kwargs())
        val = IndexedImageFolder(root / "val", tree=self.layout_tree, **self._split_kwargs())
        if train.classes != val.classes:
            missing = sorted(set(train.classes) ^ set(val.classes))[:5]
            raise layout_error(
                f"{root}: train and val have different class folders (e.g. {missing}); both splits need the same "
                f"class sub-folders.",
                self.layout_tree,
            )
        return train, val

    def _stats(self) -> None:
        """Fill ``mean``, ``std`` (and ``mean_image``) from the config, ``meta.json``, the cache, or one pass."""
        if not self.use_mean_image and self.mean is not None and self.std is not None:
            return
        root = self._require_root()
        meta = root / "meta.json"
        if not self.use_mean_image and meta.is_file():
            m = json.loads(meta.read_text())
            if "mean" in m and "std" in m:
                self.mean, self.std = m["mean"], m["std"]
                return
        files = subset([p for p, _ in self.train_set.samples], self.stats_images)
        try:
            stats = cached_statistics(
                root, files, resize_for(self.image_size), self.cache_dir, self.num_workers, self.skip_log
            )
        except ValueError as e:
            raise DataError(f"Cannot compute the training-set statistics of {root}: {e}.") from None
        if self.use_mean_image:
            self.mean_image = stats["mean_image"]
        if self.mean is None or self.std is None:
            self.mean, self.std = stats["mean"], stats["std"]

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.backend = resolve_backend(self.backend)
        train, val = self._shard_splits() if self.backend == "shards" else self.build_splits()
        self.train_set, self.val_set = train, val
        train.split, val.split = "train", "val"  # in the skip log and its messages
        if self._num_classes is not None and self._num_classes != len(train.classes):
            raise DataError(
                f"data.num_classes={self._num_classes} but {self.root} has {len(train.classes)} classes; fix "
                f"data.num_classes or set it to null."
            )
        if self.normalizer is None:  # load_state_dict (resume) may have restored it already
            self._stats()
            self._build_normalizer()
        tensor_input = self.backend == "shards"  # shard items are decoded to uint8 tensors, not PIL images
        train.transform = train_transform(self.image_size, tensor_input=tensor_input)
        val.transform = eval_transform(self.image_size, tensor_input=tensor_input)

    def _shard_splits(self):
        """data.backend=shards: ``data.root`` is a folder written by ``python -m zfnet_exp.data.shards``."""
        from .shards import ShardMap, read_meta

        root = self._require_root()
        read_meta(root)  # a clear error when root is not a shard folder
        if self.use_mean_image:
            raise DataError(
                "data.backend=shards does not compute a per-pixel mean image (the shard folder records the "
                "per-channel mean/std only); set data.mean_image=false, or use the default backend."
            )
        return ShardMap(root, "train"), ShardMap(root, "val")

    def _per_device_batch(self) -> int:
        world = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world:
            raise DataError(
                f"data.batch_size={self.batch_size} is the global batch and must divide by the "
                f"{world} processes; choose a multiple of {world}."
            )
        return self.batch_size // world

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        workers = self.num_workers > 0
        common = dict(
            batch_size=self._per_device_batch(),
            num_workers=self.num_workers,
            # training workers restart each epoch so that their seeds derive from (seed, epoch) alone, as on a
            # resumed run (persistent workers carry RNG state over from the epochs before)
            persistent_workers=self.persistent_workers and workers and not shuffle,
            prefetch_factor=self.prefetch_factor if workers else None,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
        )
        if self.backend == "shards":
            # the streaming dataset splits itself over ranks and workers; drop_last gives every rank the same
            # number of batches (LitData drops < world_size * workers items per epoch under DDP)
            from litdata import StreamingDataLoader

            from .shards import streaming_dataset

            stream = streaming_dataset(
                self.root,
                "train" if shuffle else "val",
                dataset.transform,
                shuffle=shuffle,
                drop_last=True if shuffle else None,
                seed=_run_seed(),
            )
            return StreamingDataLoader(stream, drop_last=shuffle, **common)
        # training: a (seed, epoch)-determined order (exact resume, the same global batches on any number of DDP
        # ranks); the sampler's generator seeds the DataLoader workers per epoch
        sampler = self._train_sampler(dataset) if shuffle else None
        generator = sampler.generator if sampler is not None else None
        if self.backend == "gpu_decode":  # workers only read bytes; decoded on the GPU after transfer
            dataset, common["collate_fn"] = EncodedImages(dataset.samples), collate_encoded
        return DataLoader(
            dataset,
            sampler=sampler,
            generator=generator,
            # equal steps on every rank: training drops the last partial batch; validation keeps every image
            # (under DDP Lightning's DistributedSampler pads the ranks to equal length by repeating up to
            # world_size - 1 images, so every rank runs the same number of validation steps)
            drop_last=shuffle,
            **common,
        )

    def _train_sampler(self, dataset) -> ShuffleSampler:
        trainer = self.trainer
        world, rank, epoch, skip = 1, 0, 0, 0
        if trainer is not None:
            world, rank = trainer.world_size, trainer.global_rank
            epoch = trainer.current_epoch  # a resumed run starts at its epoch
            done = trainer.fit_loop.epoch_loop.batch_progress
            if trainer.fit_loop.restarting and not done.is_last_batch:  # resumed from a mid-epoch checkpoint
                skip = done.current.processed
        seed = _run_seed()
        if world > 1:  # every rank must cut the same global order (an unseeded run has a random seed per process)
            seed = trainer.strategy.broadcast(seed, src=0)
        common = dict(
            batch_size=self.batch_size, seed=seed, epoch=epoch, num_replicas=world, rank=rank, skip_batches=skip
        )
        if self.balanced_batches:
            return ClassBalancedSampler(dataset.targets, **common)
        return ShuffleSampler(len(dataset), **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    # -- normalization on the device, and the state a checkpoint carries
    def _build_normalizer(self) -> None:
        # the per-pixel mean image is S x S (S = resize_for(image_size), the paper's 256); the normalizer subtracts
        # its centre crop from every crop (see normalize.py), eval.py subtracts it whole before its 10 crops
        mean = self.mean_image if self.mean_image is not None else self.mean
        self.normalizer = Normalizer(mean, self.std, self.normalization, channels_last=self.channels_last)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """uint8 images -> normalized float on the device (the first element of the batch)."""
        if self.normalizer is None or not isinstance(batch, (list, tuple)):
            return batch
        x = batch[0]
        if isinstance(x, (list, tuple)):  # gpu_decode: encoded images, decoded and cropped on this device
            train = self.trainer is not None and self.trainer.training
            x = decode_batch(list(x), self.image_size, train, batch[1].device)
        if not torch.is_tensor(x):
            return batch
        return type(batch)([self.normalizer(x), *batch[1:]])

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


@option_rules(
    pixel_noise=at_least(0),
    blur_probability=between(0.0, 1.0, "a probability in [0, 1]"),
    train_per_class=at_least(1),
    val_per_class=at_least(1),
    generate_workers=at_least(1),
)  # the radius range against the crop (it depends on image_size) is checked by the constructor
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
        pixel_noise: float = ShapesSpec.pixel_noise,
        blur_probability: float = ShapesSpec.blur_probability,
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
            pixel_noise=pixel_noise,
            blur_probability=blur_probability,
        )
        self.generate_workers = generate_workers

    @property
    def num_classes(self) -> int:
        return len(SHAPE_CLASSES)

    def prepare_data(self) -> None:
        self.root = generate_shapes(self.cache_dir, self.spec, workers=self.generate_workers)
        if self.backend == "shards":  # the generated folder re-encoded once as LitData shards (JPEG q90)
            from .shards import convert_folder

            out = Path(self.cache_dir) / f"shards-{self.spec.key()}"
            self.root = convert_folder(self.root, out, size=self.spec.image_size, quality=90, progress=False)

    def setup(self, stage: str | None = None) -> None:
        if self.root is None:
            self.prepare_data()  # every rank resolves the (already generated) folder
        super().setup(stage)
