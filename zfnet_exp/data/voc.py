"""PASCAL VOC 2012 classification in its own layout, with multi-label targets read from the XML annotations.

Layout (``data.root`` is the folder that holds ``VOCdevkit``, or ``VOCdevkit``, or ``VOCdevkit/VOC2012``)::

    VOCdevkit/VOC2012/JPEGImages/2008_000008.jpg
    VOCdevkit/VOC2012/Annotations/2008_000008.xml      (<object><name>horse</name><difficult>0</difficult>...)
    VOCdevkit/VOC2012/ImageSets/Main/{train,val,trainval}.txt

Targets are ``int64 [20]``: 1 = the class is present, 0 = absent, and -1 = present *only* as objects marked
"difficult" when ``include_difficult`` is false. That is the VOC development kit's own convention (its
classification ground truth marks such images 0 = "difficult" and leaves them out of that class's AP), so
-1 entries are ignored by the AP metric (``ignore_index=-1``) and count as absent when training. With
``include_difficult=true`` difficult objects count as ordinary positives.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from ..errors import DataError
from ..utils.options import at_least, option_rules
from .caltech import derived
from .folder import SampleList, SkipLog, layout_error
from .transforms import eval_transform, resize_for, train_transform

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
# the names the paper's Table 6 prints, in the same order
VOC_DISPLAY_NAMES = (
    "Airplane", "Bicycle", "Bird", "Boat", "Bottle", "Bus", "Car", "Cat", "Chair", "Cow",
    "Dining table", "Dog", "Horse", "Motorbike", "Person", "Potted plant", "Sheep", "Sofa", "Train", "TV",
)  # fmt: skip
IGNORE = -1
SPLITS = ("train", "val", "trainval")

VOC_TREE = """\
<data.root>/                 (or data.root=<data.root>/VOCdevkit, or .../VOCdevkit/VOC2012)
└── VOCdevkit/VOC2012/
    ├── JPEGImages/        2008_000008.jpg ...
    ├── Annotations/       2008_000008.xml ...   (<object><name>horse</name><difficult>0</difficult>...)
    └── ImageSets/Main/    train.txt  val.txt  trainval.txt   (one image id per line)"""


def _error(problem: str) -> DataError:
    return layout_error(problem, VOC_TREE)


def find_voc_dir(root: str | Path, year: str = "2012") -> Path:
    """The ``VOC<year>`` folder under ``root`` (accepted: it, ``VOCdevkit``, or the folder holding ``VOCdevkit``)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise _error(f"Dataset folder {root} does not exist.")
    for candidate in (root, root / f"VOC{year}", root / "VOCdevkit" / f"VOC{year}"):
        if candidate.name == f"VOC{year}" and candidate.is_dir():
            missing = [d for d in ("JPEGImages", "Annotations", "ImageSets/Main") if not (candidate / d).is_dir()]
            if missing:
                raise _error(f"{candidate} lacks {', '.join(missing)}.")
            return candidate
    found = sorted(p.name for p in root.iterdir())[:8]
    raise _error(f"{root} has no VOCdevkit/VOC{year} folder (found: {found or 'nothing'}).")


def read_objects(xml_path: str | Path) -> list[tuple[str, bool]]:
    """``(class name, difficult)`` for every ``<object>`` of an annotation file."""
    try:
        tree = ET.parse(xml_path)
    except (ET.ParseError, OSError) as e:
        raise DataError(f"Cannot read annotation {xml_path}: {e}. Restore the file from the VOC archive.") from None
    objects = []
    for obj in tree.getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        objects.append((name, difficult))
    return objects


def multilabel_target(objects: list[tuple[str, bool]], include_difficult: bool = False) -> torch.Tensor:
    """``int64 [20]``: 1 present, 0 absent, -1 (``IGNORE``) present only as difficult objects (unless included)."""
    target = torch.zeros(len(VOC_CLASSES), dtype=torch.int64)
    for name, difficult in objects:
        if name not in VOC_CLASSES:
            raise DataError(
                f"Unknown VOC class {name!r} in an annotation; the 20 classes are {', '.join(VOC_CLASSES)}."
            )
        c = VOC_CLASSES.index(name)
        if not difficult or include_difficult:
            target[c] = 1
        elif target[c] == 0:
            target[c] = IGNORE
    return target


class VOCClassification(SampleList):
    """The images of one ``ImageSets/Main`` list with multi-label targets; items ``(image, target[20], index)``."""

    def __init__(
        self,
        root: str | Path,
        image_set: str = "train",
        year: str = "2012",
        include_difficult: bool = False,
        transform: Callable | None = None,
        *,
        strict: bool = False,
        skip_log: SkipLog | None = None,
        draft_size: int | None = None,
    ):
        if image_set not in SPLITS:
            raise DataError(
                f"VOC image set {image_set!r} is not one of {', '.join(SPLITS)} (ImageSets/Main/<set>.txt)."
            )
        voc = find_voc_dir(root, str(year))
        listing = voc / "ImageSets" / "Main" / f"{image_set}.txt"
        if not listing.is_file():
            raise _error(f"{listing} does not exist.")
        ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
        if not ids:
            raise _error(f"{listing} lists no images.")
        samples = []
        for image_id in ids:
            image, xml = voc / "JPEGImages" / f"{image_id}.jpg", voc / "Annotations" / f"{image_id}.xml"
            if not xml.is_file():
                raise _error(f"{listing} lists {image_id} but {xml} does not exist.")
            samples.append((str(image), multilabel_target(read_objects(xml), include_difficult)))
        self.image_set = image_set
        self.voc_dir = voc
        super().__init__(
            samples,
            list(VOC_CLASSES),
            transform,
            class_names=VOC_DISPLAY_NAMES,
            strict=strict,
            skip_log=skip_log,
            draft_size=draft_size,
            root=voc,
        )

    @property
    def target_matrix(self) -> torch.Tensor:
        """``[N, 20]`` targets of every image."""
        return torch.stack(self.targets)


@option_rules(image_size=at_least(64), batch_size=at_least(1), num_workers=at_least(0))
class VOCDataModule(L.LightningDataModule):
    """VOC 2012 classification: train on ``train_split``, evaluate on ``eval_split``. The paper trained on
    train+val and reported the (server-scored) test set; the test annotations are not public, so the default is
    train -> val, and ``train_split=trainval`` needs an evaluation split of your own."""

    name = "voc2012"

    def __init__(
        self,
        root: str | None = None,
        year: str = "2012",
        train_split: str = "train",
        eval_split: str = "val",
        include_difficult: bool = False,
        image_size: int = 224,
        batch_size: int = 64,
        num_workers: int = 4,
        strict: bool = False,
        skip_dir: str | None = None,
    ):
        super().__init__()
        if root is None:
            raise _error("data.root is not set.")
        self.strict, self.skip_log = bool(strict), SkipLog(skip_dir)
        self.root = Path(root).expanduser()
        self.year, self.train_split, self.eval_split = str(year), train_split, eval_split
        self.include_difficult = bool(include_difficult)
        self.image_size = int(image_size)
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.train_set: VOCClassification | None = None
        self.eval_set: VOCClassification | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            make = lambda s: VOCClassification(  # noqa: E731
                self.root,
                s,
                self.year,
                self.include_difficult,
                eval_transform(self.image_size),
                strict=self.strict,
                skip_log=self.skip_log,
                draft_size=resize_for(self.image_size),
            )
            train, evaluation = make(self.train_split), make(self.eval_split)
            shared = {p for p, _ in train.samples} & {p for p, _ in evaluation.samples}
            if shared:
                raise DataError(
                    f"data.train_split={self.train_split} and data.eval_split={self.eval_split} share {len(shared)} "
                    f"images, so the scores would be measured on training images. Use train_split=train with "
                    f"eval_split=val (the default; the paper's train+val -> test needs the evaluation server)."
                )
            self.train_set, self.eval_set = train, evaluation

    @property
    def classes(self) -> list[str]:
        return list(VOC_DISPLAY_NAMES)

    @property
    def skipped_files(self) -> dict[str, str]:
        """``{path: reason}`` of every unreadable image skipped so far (DataLoader workers included)."""
        return self.skip_log.entries()

    @property
    def num_classes(self) -> int:
        return len(VOC_CLASSES)

    def augmented_train_set(self) -> VOCClassification:
        self.setup()
        return derived(self.train_set, transform=train_transform(self.image_size))

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
        return self._loader(self.augmented_train_set(), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.eval_set, shuffle=False)


# --------------------------------------------------------------------------- segmentation masks as concepts

VOC_SEG_TREE = """\
<root>/                      (or <root>/VOCdevkit, or .../VOCdevkit/VOC2012)
└── VOCdevkit/VOC2012/
    ├── JPEGImages/               2007_000032.jpg ...
    ├── SegmentationClass/        2007_000032.png ...   (palette PNG: 0 background, 1-20 classes, 255 void)
    └── ImageSets/Segmentation/   train.txt  val.txt  trainval.txt"""
VOC_SEG_CONCEPTS = ("background", *VOC_CLASSES)
VOC_VOID = 255


def _seg_error(problem: str) -> DataError:
    return layout_error(problem, VOC_SEG_TREE)


class VOCSegmentationConcepts(torch.utils.data.Dataset):
    """PASCAL VOC 2012's ``SegmentationClass`` masks as Network Dissection concepts: items ``(image, labels
    [1, m, m] int64, i)`` where label v >= 1 is concept ``VOC_SEG_CONCEPTS[v - 1]`` (background and the 20
    classes, real photographs) and 0 marks void (the 255 boundary band, part of no concept). The mask goes
    through the images' eval geometry (nearest) to ``crop_size``, then to ``mask_size`` (nearest)."""

    concepts = VOC_SEG_CONCEPTS
    categories = ("background", *["object"] * len(VOC_CLASSES))

    def __init__(self, root, image_set: str = "val", crop_size: int = 224, transform=None, mask_size=None):
        from .transforms import eval_geometry

        root = Path(root).expanduser()
        if not root.exists():
            raise _seg_error(f"Dataset folder {root} does not exist.")
        candidates = (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012")
        voc = next((c for c in candidates if c.name == "VOC2012" and c.is_dir()), None)
        if voc is None:
            raise _seg_error(f"{root} has no VOCdevkit/VOC2012 folder.")
        listing = voc / "ImageSets" / "Segmentation" / f"{image_set}.txt"
        if not listing.is_file():
            raise _seg_error(f"{listing} does not exist.")
        ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
        if not ids:
            raise _seg_error(f"{listing} lists no images.")
        self.items = []
        for image_id in ids:
            image, seg = voc / "JPEGImages" / f"{image_id}.jpg", voc / "SegmentationClass" / f"{image_id}.png"
            for path in (image, seg):
                if not path.is_file():
                    raise _seg_error(f"{listing} lists {image_id} but {path} does not exist.")
            self.items.append((image, seg))
        self.transform = transform
        self.geometry = eval_geometry(int(crop_size))
        self.mask_size = int(mask_size or crop_size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        import numpy as np
        from PIL import Image

        image_path, seg_path = self.items[i]
        with Image.open(image_path) as im:
            image = im.convert("RGB")
        with Image.open(seg_path) as seg:
            if seg.mode not in ("P", "L"):
                raise DataError(f"{seg_path} is a {seg.mode} image; VOC SegmentationClass masks are palette PNGs.")
            values = torch.from_numpy(np.asarray(seg, dtype=np.int64))
        labels = torch.where(values == VOC_VOID, 0, values + 1)
        if int(labels.max()) > len(VOC_SEG_CONCEPTS):
            raise DataError(f"{seg_path} holds class index {int(values.max())}; VOC has 0-20 and 255 (void).")
        labels = self.geometry(labels[None])
        labels = torch.nn.functional.interpolate(labels[None].float(), size=self.mask_size, mode="nearest")[0].long()
        return (self.transform(image) if self.transform else image), labels, i
