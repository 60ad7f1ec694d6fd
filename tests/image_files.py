"""Real image files for dataset fixtures: JPEGs in RGB, greyscale ("L") and CMYK (which PIL writes as Adobe
CMYK JPEGs, as some ImageNet files are), a truncated JPEG and a non-image file with an image name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def pattern(width: int, height: int, seed: int) -> np.ndarray:
    """A deterministic, non-constant RGB uint8 picture (so crops and means are distinguishable)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 3 + seed * 17) % 256, (y * 5 + seed * 29) % 256, ((x + y) * 2 + seed * 7) % 256], -1)
    return np.clip(base + rng.integers(-8, 9, base.shape), 0, 255).astype(np.uint8)


def write_image(path: Path, width: int = 48, height: int = 40, seed: int = 0, mode: str = "RGB") -> Path:
    """Write a JPEG (or PNG by suffix) in ``mode`` ("RGB", "L" greyscale, "CMYK")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(pattern(width, height, seed)).convert(mode)
    img.save(path, quality=95) if path.suffix.lower() in (".jpg", ".jpeg") else img.save(path)
    return path


def write_truncated_jpeg(path: Path, seed: int = 99) -> Path:
    """A real JPEG cut in half: PIL opens its header but fails decoding the pixels."""
    write_image(path, 64, 64, seed)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_not_an_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("<html>404 Not Found</html>\n")
    return path


def image_folder(root: Path, classes=("a", "b"), per_class: int = 3, splits=("train", "val"), ext=".jpg") -> Path:
    """``root/<split>/<class>/<k><ext>``; the first class's first image is greyscale, its second CMYK."""
    for s, split in enumerate(splits):
        for c, cls in enumerate(classes):
            for k in range(per_class):
                mode = "L" if (c, k) == (0, 0) else "CMYK" if (c, k) == (0, 1) else "RGB"
                write_image(
                    root / split / cls / f"{k}{ext}", 40 + 4 * k, 36 + 2 * c, seed=100 * s + 10 * c + k, mode=mode
                )
    return root


# -- ImageNet (ILSVRC 2012) in its real layouts -------------------------------------------------------------

# (wnid, words, ILSVRC2012_ID in this fixture's meta.mat). The IDs are deliberately not in sorted-wnid order, as
# in the real devkit; the two "crane" classes exercise the disambiguation of duplicate display names.
IMAGENET_SYNSETS = [
    ("n02119789", "kit fox, Vulpes macrotis", 1),
    ("n03126707", "crane", 2),
    ("n01440764", "tench, Tinca tinca", 3),
    ("n02012849", "crane", 4),
]
# validation file k (1-based) -> wnid: every class twice, in an order unrelated to either ordering above
IMAGENET_VAL_TRUTH = [
    "n02012849",
    "n01440764",
    "n03126707",
    "n02119789",
    "n01440764",
    "n02119789",
    "n02012849",
    "n03126707",
]


def write_meta_mat(path: Path, synsets=IMAGENET_SYNSETS) -> Path:
    """A devkit ``meta.mat``: the struct array ``synsets`` with the devkit's fields, leaf classes first and one
    inner WordNet node (num_children > 0) that must not become a class."""
    import scipy.io

    fields = [
        "ILSVRC2012_ID",
        "WNID",
        "words",
        "gloss",
        "num_children",
        "children",
        "wordnet_height",
        "num_train_images",
    ]
    rows = [(i, w, words, f"gloss of {w}", 0, np.zeros((0,), np.uint16), 0, 2) for w, words, i in synsets]
    rows.append(
        (
            len(synsets) + 1,
            "n00001740",
            "entity",
            "that which exists",
            len(synsets),
            np.arange(1, len(synsets) + 1, dtype=np.uint16),
            19,
            0,
        )
    )
    arr = np.zeros((len(rows), 1), dtype=[(f, object) for f in fields])
    for k, row in enumerate(rows):
        for f, v in zip(fields, row):
            arr[k, 0][f] = np.array([[v]], dtype=np.uint16) if isinstance(v, int) else v
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"synsets": arr})
    return path


def imagenet_root(root: Path, val: str = "devkit", per_class: int = 2, size: tuple[int, int] = (44, 36)) -> Path:
    """ImageNet as on disk: ``train/<wnid>/<wnid>_<k>.JPEG`` (one greyscale and one CMYK file) and ``val`` as
    ``folders`` (class folders) or flat ``ILSVRC2012_val_%08d.JPEG`` labelled by ``loc`` (LOC_val_solution.csv
    + LOC_synset_mapping.txt), ``devkit`` (ground truth of ILSVRC2012_IDs + meta.mat), ``metabin``
    (torchvision's prepared meta.bin) or ``none``."""
    w, h = size
    for c, (wnid, _, _) in enumerate(sorted(IMAGENET_SYNSETS)):
        for k in range(per_class):
            mode = "L" if (c, k) == (0, 0) else "CMYK" if (c, k) == (1, 0) else "RGB"
            write_image(root / "train" / wnid / f"{wnid}_{k}.JPEG", w + 3 * k, h + 2 * c, seed=10 * c + k, mode=mode)
    for k, wnid in enumerate(IMAGENET_VAL_TRUTH, start=1):
        name = f"ILSVRC2012_val_{k:08d}.JPEG"
        target = root / "val" / wnid / name if val == "folders" else root / "val" / name
        write_image(target, w, h + k, seed=1000 + k)
    if val == "loc":
        mapping = "".join(f"{w} {words}\n" for w, words, _ in sorted(IMAGENET_SYNSETS))
        (root / "LOC_synset_mapping.txt").write_text(mapping)
        lines = ["ImageId,PredictionString"] + [
            f"ILSVRC2012_val_{k:08d},{w} 1 2 30 40 {w} 5 6 20 21" for k, w in enumerate(IMAGENET_VAL_TRUTH, start=1)
        ]
        (root / "LOC_val_solution.csv").write_text("\n".join(lines[:1] + lines[1:][::-1]) + "\n")  # any row order
    if val == "metabin":  # what torchvision.datasets.ImageNet's parse_devkit_archive writes
        import torch

        wnid_to_classes = {w: tuple(words.split(", ")) for w, words, _ in IMAGENET_SYNSETS}
        torch.save((wnid_to_classes, list(IMAGENET_VAL_TRUTH)), root / "meta.bin")
    if val == "devkit":
        devkit = root / "ILSVRC2012_devkit_t12" / "data"
        write_meta_mat(devkit / "meta.mat")
        wnid_to_id = {w: i for w, _, i in IMAGENET_SYNSETS}
        (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text(
            "".join(f"{wnid_to_id[w]}\n" for w in IMAGENET_VAL_TRUTH)
        )
    return root
