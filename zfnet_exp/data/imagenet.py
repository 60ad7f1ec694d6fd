"""ImageNet-1k (ILSVRC 2012) in the layouts people actually have on disk.

Training images are always ``train/<wnid>/*.JPEG`` (labels = the sorted WordNet ids, torchvision's ImageFolder
order, which is also the order of ``LOC_synset_mapping.txt`` and of torchvision's pretrained models). Validation
images are either class folders ``val/<wnid>/*.JPEG`` (the layout ``torchvision.datasets.ImageNet`` and most
preparation scripts produce) or the flat archive ``val/ILSVRC2012_val_00000001.JPEG ...`` labelled by

* Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``; the first WordNet id of the prediction string
  is the class), or
* the devkit: ``ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt`` holds one *ILSVRC2012_ID*
  (1..1000) per validation image, in file-number order. Those IDs follow ``meta.mat``'s synset order, which is
  NOT the sorted-wnid order (ID 1 is n02119789 "kit fox", the first sorted wnid n01440764 "tench" has ID 449),
  so every ID is mapped ID -> wnid (``meta.mat``) -> label (sorted train wnids), or
* torchvision's prepared ``meta.bin`` (its validation wnids in file-number order).

Human-readable names come from ``LOC_synset_mapping.txt``, ``meta.mat`` or ``meta.bin`` (whichever exists): the
first synonym ("tench" of "tench, Tinca tinca"), disambiguated by the wnid where two classes share it (ImageNet
has two "crane" and two "maillot" classes).

Kaggle's download nests the images as ``ILSVRC/Data/CLS-LOC/{train,val}`` with the CSV files at the top; giving
that top folder as ``data.root`` works too.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

from torchvision.datasets.imagenet import load_meta_file

from .datamodule import ImageFolderDataModule
from .folder import IndexedImageFolder, SampleList, SkippingDataset, check_split_folder, is_image_file, layout_error

IMAGENET_TREE = """\
<data.root>/
├── train/
│   ├── n01440764/   n01440764_10026.JPEG ...
│   └── ...          (one folder per WordNet id, 1000 for ILSVRC 2012)
├── val/             either class folders like train/ (val/n01440764/*.JPEG), or flat:
│   ├── ILSVRC2012_val_00000001.JPEG
│   └── ...          with its ground truth from ONE of:
├── LOC_val_solution.csv  (+ LOC_synset_mapping.txt for class names)            [Kaggle]
├── ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt + meta.mat  [devkit]
└── meta.bin                                                                    [torchvision]
(Kaggle's ILSVRC/Data/CLS-LOC/{train,val} under data.root is found too; a ground-truth file elsewhere:
data.val_ground_truth=<LOC_val_solution.csv or devkit folder>)"""

DEVKIT = "ILSVRC2012_devkit_t12"
VAL_FILE = re.compile(r"ILSVRC2012_val_(\d{8})$")


# -- class names ----------------------------------------------------------------------------------------------


def read_synset_mapping(path: str | Path) -> dict[str, str]:
    """``LOC_synset_mapping.txt`` (``n01440764 tench, Tinca tinca`` per line) -> ``{wnid: words}``."""
    out = {}
    for line in Path(path).read_text().splitlines():
        wnid, _, words = line.strip().partition(" ")
        if wnid:
            out[wnid] = words.strip()
    return out


def read_meta_mat(path: str | Path) -> tuple[dict[int, str], dict[str, str]]:
    """The devkit's ``data/meta.mat``: ``{ILSVRC2012_ID: wnid}`` and ``{wnid: words}`` of its leaf synsets (the
    1000 classes; inner WordNet nodes have ``num_children > 0``), as ``torchvision.datasets.imagenet`` reads it."""
    import scipy.io

    synsets = scipy.io.loadmat(str(path), squeeze_me=True)["synsets"]
    id_to_wnid, words = {}, {}
    for s in synsets.flatten():
        if int(s["num_children"]) != 0:
            continue
        wnid = str(s["WNID"])
        id_to_wnid[int(s["ILSVRC2012_ID"])] = wnid
        words[wnid] = str(s["words"])
    return id_to_wnid, words


def display_names(wnids: list[str], words: dict[str, str]) -> list[str]:
    """First synonym of each class (``"tench"``), with the wnid added where that name is not unique."""
    first = [words[w].split(",")[0].strip() if words.get(w) else w for w in wnids]
    counts = Counter(first)
    return [f"{n} ({w})" if counts[n] > 1 and n != w else n for n, w in zip(first, wnids)]


# -- validation ground truth ---------------------------------------------------------------------------------


def read_loc_solution(path: str | Path) -> dict[str, str]:
    """``LOC_val_solution.csv`` -> ``{ImageId: wnid}`` (the first wnid of each ``PredictionString``)."""
    with open(path, newline="") as f:
        return {row["ImageId"]: row["PredictionString"].split()[0] for row in csv.DictReader(f)}


def read_devkit_ground_truth(devkit: str | Path) -> dict[str, str]:
    """The devkit's validation labels -> ``{ImageId: wnid}`` (line k = ``ILSVRC2012_val_%08d`` % k)."""
    devkit = Path(devkit)
    id_to_wnid, _ = read_meta_mat(devkit / "data" / "meta.mat")
    lines = (devkit / "data" / "ILSVRC2012_validation_ground_truth.txt").read_text().split()
    out = {}
    for k, ilsvrc_id in enumerate(lines, start=1):
        if int(ilsvrc_id) not in id_to_wnid:
            raise layout_error(
                f"{devkit}: ground-truth line {k} has ILSVRC2012_ID {ilsvrc_id}, which is not a class of its meta.mat.",
                IMAGENET_TREE,
                "data.val_ground_truth",
            )
        out[f"ILSVRC2012_val_{k:08d}"] = id_to_wnid[int(ilsvrc_id)]
    return out


def read_meta_bin(path: str | Path) -> tuple[dict[str, str], dict[str, str]]:
    """torchvision's ``meta.bin``: ``({ImageId: wnid}, {wnid: words})`` (its wnids are in file-number order)."""
    path = Path(path)
    wnid_to_classes, val_wnids = load_meta_file(path.parent, path.name)
    truth = {f"ILSVRC2012_val_{k:08d}": w for k, w in enumerate(val_wnids, start=1)}
    return truth, {w: ", ".join(c) for w, c in wnid_to_classes.items()}


class ImageNetDataModule(ImageFolderDataModule):
    """ImageNet in any of the layouts of the module docstring; everything else (statistics, the paper's mean
    image, skipping unreadable files, loaders) is :class:`ImageFolderDataModule`'s."""

    name = "imagenet"
    layout_tree = IMAGENET_TREE

    def __init__(self, *args, val_ground_truth: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.val_ground_truth = Path(val_ground_truth).expanduser() if val_ground_truth else None

    def image_root(self) -> Path:
        """``data.root``, or its Kaggle ``ILSVRC/Data/CLS-LOC`` sub-folder when that holds the images."""
        root = self._require_root()
        kaggle = root / "ILSVRC" / "Data" / "CLS-LOC"
        return kaggle if not (root / "train").is_dir() and (kaggle / "train").is_dir() else root

    def _search(self, name: str) -> Path | None:
        for folder in dict.fromkeys([self._require_root(), self.image_root()]):
            if (folder / name).exists():
                return folder / name
        return None

    def class_words(self) -> dict[str, str]:
        """``{wnid: words}`` from the first name source found (empty if none)."""
        if mapping := self._search("LOC_synset_mapping.txt"):
            return read_synset_mapping(mapping)
        devkit = self._devkit()
        if devkit is not None and (devkit / "data" / "meta.mat").is_file():
            return read_meta_mat(devkit / "data" / "meta.mat")[1]
        if meta := self._search("meta.bin"):
            return read_meta_bin(meta)[1]
        return {}

    def _devkit(self) -> Path | None:
        gt = self.val_ground_truth
        if gt is not None and gt.is_dir():
            return gt
        return self._search(DEVKIT)

    def val_truth(self) -> tuple[dict[str, str], str]:
        """``({ImageId: wnid}, source)`` for a flat validation folder."""
        gt = self.val_ground_truth
        if gt is not None:
            if gt.is_file() and gt.suffix == ".csv":
                return read_loc_solution(gt), str(gt)
            if gt.is_file() and gt.name == "meta.bin":
                return read_meta_bin(gt)[0], str(gt)
            if gt.is_dir() and (gt / "data" / "ILSVRC2012_validation_ground_truth.txt").is_file():
                return read_devkit_ground_truth(gt), str(gt)
            raise layout_error(
                f"data.val_ground_truth={gt} is neither a LOC_val_solution.csv file, a meta.bin, nor a devkit "
                f"folder holding data/ILSVRC2012_validation_ground_truth.txt and data/meta.mat.",
                IMAGENET_TREE,
                "data.val_ground_truth",
            )
        if csv_file := self._search("LOC_val_solution.csv"):
            return read_loc_solution(csv_file), str(csv_file)
        devkit = self._devkit()
        if devkit is not None and (devkit / "data" / "ILSVRC2012_validation_ground_truth.txt").is_file():
            return read_devkit_ground_truth(devkit), str(devkit)
        if meta := self._search("meta.bin"):
            return read_meta_bin(meta)[0], str(meta)
        raise layout_error(
            f"{self.image_root() / 'val'} holds images directly (the flat ILSVRC2012_val_*.JPEG archive) but no "
            f"ground truth was found in {self._require_root()}: put LOC_val_solution.csv or the "
            f"{DEVKIT} folder there (extract {DEVKIT}.tar.gz), or point data.val_ground_truth at one.",
            IMAGENET_TREE,
            "data.val_ground_truth",
        )

    def build_splits(self) -> tuple[SkippingDataset, SkippingDataset]:
        images = self.image_root()
        check_split_folder(images / "train", IMAGENET_TREE)
        train = IndexedImageFolder(images / "train", tree=IMAGENET_TREE, **self._split_kwargs())
        val_dir = images / "val"
        if not val_dir.is_dir():
            raise layout_error(f"{images} has no 'val' sub-folder.", IMAGENET_TREE)
        if any(p.is_dir() for p in val_dir.iterdir()):
            check_split_folder(val_dir, IMAGENET_TREE)
            val: SkippingDataset = IndexedImageFolder(
                val_dir, class_to_idx=train.class_to_idx, tree=IMAGENET_TREE, **self._split_kwargs()
            )
        else:
            val = self._flat_val(val_dir, train)
        words = self.class_words()
        if words:
            names = display_names(train.classes, words)
            train.class_names = names
            val.class_names = names
        return train, val

    def _flat_val(self, val_dir: Path, train: IndexedImageFolder) -> SampleList:
        files = sorted(p for p in val_dir.iterdir() if is_image_file(p))
        if not files:
            raise layout_error(f"{val_dir} has neither class sub-folders nor images.", IMAGENET_TREE)
        truth, source = self.val_truth()
        missing = [p.name for p in files if p.stem not in truth]
        if missing:
            raise layout_error(
                f"{len(missing)} of the {len(files)} images in {val_dir} have no label in {source} (e.g. "
                f"{missing[:3]}); the ground truth must list every validation file by its ImageId "
                f"(ILSVRC2012_val_NNNNNNNN).",
                IMAGENET_TREE,
                "data.val_ground_truth",
            )
        unknown = sorted({truth[p.stem] for p in files} - set(train.class_to_idx))
        if unknown:
            raise layout_error(
                f"{source} labels validation images with {len(unknown)} WordNet ids that have no folder in "
                f"{train.root} (e.g. {unknown[:3]}); train/ needs one folder per class.",
                IMAGENET_TREE,
            )
        samples = [(str(p), train.class_to_idx[truth[p.stem]]) for p in files]
        return SampleList(samples, train.classes, root=val_dir, **self._split_kwargs())
