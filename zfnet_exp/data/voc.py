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
