"""Caltech-101/256 in their own on-disk layouts (real JPEG files generated here, one greyscale and one CMYK), the
paper's split protocol, and the mean per-class accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zfnet_exp.data.caltech import CaltechDataModule, CaltechDataset, find_categories_dir, protocol_split
from zfnet_exp.data.transforms import eval_transform
from zfnet_exp.diagnostics.transfer_metrics import mean_per_class_accuracy, per_class_accuracy
from zfnet_exp.errors import DataError

COLORS = [(220, 30, 30), (30, 200, 40), (30, 40, 220), (220, 220, 30), (200, 30, 220)]


def _picture(c: int, i: int, size=(48, 40)) -> Image.Image:
    """Class ``c``: a coloured square on a grey background, its position varying with ``i``."""
    img = Image.new("RGB", size, (128, 128, 128))
    x, y = 4 + (3 * i) % 14, 3 + (5 * i) % 12
    img.paste(COLORS[c % len(COLORS)], (x, y, x + 24, y + 22))
    return img


def make_caltech(root: Path, variant: str, per_class: list[int]) -> Path:
    """``root/<NNN>_ObjectCategories`` with ``len(per_class)`` classes (+ the background/clutter folder); class 0
    holds one greyscale and one CMYK JPEG (both occur in the real Caltech-101)."""
    cats = root / f"{variant}_ObjectCategories"
    names = ["zebra", "accordion", "Faces_easy", "ant", "binocular"][: len(per_class)]
    folders = names if variant == "101" else [f"{k + 1:03d}.{n}" for k, n in enumerate(names)]
    extra = "BACKGROUND_Google" if variant == "101" else "257.clutter"
    for c, (folder, n) in enumerate(zip([*folders, extra], [*per_class, 3])):
        d = cats / folder
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            name = f"image_{i + 1:04d}.jpg" if variant == "101" else f"{folder[:3]}_{i + 1:04d}.jpg"
            img = _picture(c, i)
            if c == 0 and i == 0:
                img = img.convert("L")
            elif c == 0 and i == 1:
                img = img.convert("CMYK")
            img.save(d / name, quality=95)
    return root


def test_classes_names_and_items(tmp_path):
    """Class order = sorted folder names (torchvision's convention), Caltech-256's NNN. prefix stripped, the
    background/clutter folders excluded by default and kept with exclude=[]; every item, greyscale and CMYK
    files included, is a uint8 [3,S,S] image whose pixels match PIL's own RGB conversion of the file."""
    make_caltech(tmp_path / "c101", "101", [3, 2, 2])
    ds = CaltechDataset(tmp_path / "c101", "101", transform=eval_transform(32))
    assert ds.class_names == ds.classes == ["Faces_easy", "accordion", "zebra"]  # sorted folder names (bytewise)
    assert ds.targets == [0, 0, 1, 1, 2, 2, 2]
    assert CaltechDataset(tmp_path / "c101", "101", exclude=[]).classes[0] == "BACKGROUND_Google"

    make_caltech(tmp_path / "c256", "256", [2, 2, 2])
    ds256 = CaltechDataset(tmp_path / "c256" / "256_ObjectCategories", "256", transform=eval_transform(32))
    assert ds256.classes == ["001.zebra", "002.accordion", "003.Faces_easy"]
    assert ds256.class_names == ["zebra", "accordion", "Faces_easy"]
    assert "clutter" in CaltechDataset(tmp_path / "c256", "256", exclude=[]).class_names

    for path in (ds256.samples[0][0], ds256.samples[1][0]):  # the greyscale, then the CMYK file of 001.zebra
        mode = Image.open(path).mode
        assert mode in ("L", "CMYK")
        image, label, index = ds256[[p for p, _ in ds256.samples].index(path)]
        assert image.dtype == torch.uint8 and image.shape == (3, 32, 32) and label == 0
        oracle = eval_transform(32)(Image.open(path).convert("RGB"))
        assert torch.equal(image, oracle), mode


def test_unreadable_file_is_skipped_and_counted(tmp_path):
    """A truncated JPEG in a class folder is replaced by the next readable image and counted once (the package's
    shared skip-and-count loader); with strict=True it is a DataError naming the file."""
    make_caltech(tmp_path, "101", [3, 2])
    bad = tmp_path / "101_ObjectCategories" / "accordion" / "image_0001.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    ds = CaltechDataset(tmp_path, "101", transform=eval_transform(32))
    i = [p for p, _ in ds.samples].index(str(bad))
    with pytest.warns(UserWarning, match="image_0001.jpg"):
        image, label, index = ds[i]
    assert index == i + 1 and label == ds.targets[i + 1] and image.shape == (3, 32, 32)
    ds[i]
    assert list(ds.skipped) == [str(bad)]
    with pytest.raises(DataError, match="image_0001.jpg"):
        CaltechDataset(tmp_path, "101", strict=True)[i]


def test_layout_errors_name_the_expected_tree(tmp_path):
    """A missing folder or a wrong layout is one DataError that shows the expected tree and the key to set."""
    with pytest.raises(
        DataError, match=r"(?s)nope does not exist.*set data\.root=.*101_ObjectCategories/\n.*accordion/"
    ):
        find_categories_dir(tmp_path / "nope", "101")
    (tmp_path / "wrong" / "images").mkdir(parents=True)
    with pytest.raises(
        DataError, match=r"(?s)no 256_ObjectCategories folder \(found: \['images'\]\).*data\.root.*001\.ak47/"
    ):
        CaltechDataModule(root=str(tmp_path / "wrong"), variant="256", image_size=32).setup()


@pytest.mark.parametrize("per_class", [15, 30])
def test_protocol_split_sizes_seeds_and_nesting(per_class):
    """Per split: exactly N training images of every class, min(50, rest) test images, disjoint; the same seed
    gives the same split, the 5 seeds give 5 different ones; for one seed the N=15 training set is inside N=30's.
    Reference: counting per class (np.bincount) on class sizes like Caltech-101's (31 is its smallest class)."""
    sizes = [31, 45, 80, 120]
    targets = np.repeat(np.arange(len(sizes)), sizes)
    splits = [protocol_split(targets, per_class, 50, seed) for seed in range(5)]
    for train, test in splits:
        assert np.bincount(targets[train]).tolist() == [per_class] * len(sizes)
        assert np.bincount(targets[test]).tolist() == [min(50, s - per_class) for s in sizes]
        assert not set(train) & set(test)
    assert len({tuple(tr) for tr, _ in splits}) == 5
    again = protocol_split(targets, per_class, 50, 3)
    assert all(np.array_equal(a, b) for a, b in zip(again, splits[3]))
    small, _ = protocol_split(targets, 15, 50, 2)
    large, _ = protocol_split(targets, 30, 50, 2)
    assert set(small) <= set(large)
    _, all_others = protocol_split(targets, 1, None, 0)  # test_per_class=None: every image not used for training
    assert len(all_others) == len(targets) - len(sizes)


def test_too_few_images_is_a_clear_error():
    """N training images from a class that has N images leave no test image: the error names the class and key."""
    with pytest.raises(DataError, match=r"Class 'ant' has only 31 images.*transfer\.per_class below 31"):
        protocol_split(np.repeat([0, 1], [31, 60]), 31, 50, 0, classes=["ant", "bee"])


def test_mean_per_class_accuracy_by_hand():
    """Hand computation: class 0 has 4 test images (3 right), class 1 has 1 (right), class 2 has 2 (0 right) and
    class 3 has none (left out): (3/4 + 1 + 0) / 3, not the 4/7 of plain accuracy."""
    targets = torch.tensor([0, 0, 0, 0, 1, 2, 2])
    preds = torch.tensor([0, 0, 0, 1, 1, 0, 1])
    acc = per_class_accuracy(preds, targets, num_classes=4)
    assert acc[:3].tolist() == [0.75, 1.0, 0.0] and torch.isnan(acc[3])
    assert mean_per_class_accuracy(preds, targets, 4) == pytest.approx((0.75 + 1 + 0) / 3)
    scores = torch.nn.functional.one_hot(preds, 4).float()  # scores are accepted too (argmax)
    assert mean_per_class_accuracy(scores, targets, 4) == pytest.approx(0.5833333)
