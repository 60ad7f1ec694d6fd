"""PASCAL VOC 2012 classification in its own layout (real JPEG + XML files generated here): multi-label targets,
the "difficult" rule, and per-class AP against scikit-learn and a hand computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zfnet_exp.data.voc import IGNORE, VOC_CLASSES, VOCClassification, VOCDataModule, find_voc_dir
from zfnet_exp.diagnostics.transfer_metrics import average_precision
from zfnet_exp.errors import DataError

# image id -> objects (class, difficult); the colour of an image is that of its first object's class
VOC_IMAGES = {
    "2008_000001": [("cat", False), ("dog", True)],
    "2008_000002": [("dog", False)],
    "2008_000003": [("dog", True), ("dog", False), ("person", True)],
    "2008_000004": [("cat", False), ("person", False)],
    "2008_000005": [("person", False)],
    "2008_000006": [("cat", False)],
    "2008_000007": [("dog", False), ("person", False)],
    "2008_000008": [("person", False)],
}
VOC_SPLITS = {"train": ["2008_000001", "2008_000002", "2008_000003", "2008_000004", "2008_000005"],
              "val": ["2008_000006", "2008_000007", "2008_000008"]}  # fmt: skip
_COLORS = {"cat": (220, 40, 40), "dog": (40, 200, 40), "person": (40, 40, 220)}


def _xml(image_id: str, objects) -> str:
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{int(d)}</difficult>"
        f"<bndbox><xmin>2</xmin><ymin>2</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object>"
        for n, d in objects
    )
    return (f"<annotation><folder>VOC2012</folder><filename>{image_id}.jpg</filename>"
            f"<size><width>48</width><height>40</height><depth>3</depth></size>{objs}</annotation>")  # fmt: skip


def make_voc(root: Path, images=VOC_IMAGES, splits=VOC_SPLITS) -> Path:
    """``root/VOCdevkit/VOC2012/{JPEGImages,Annotations,ImageSets/Main}``; one greyscale and one CMYK JPEG."""
    voc = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / d).mkdir(parents=True, exist_ok=True)
    for k, (image_id, objects) in enumerate(images.items()):
        img = Image.new("RGB", (48, 40), (128, 128, 128))
        img.paste(_COLORS[objects[0][0]], (4 + k, 4, 30 + k, 30))
        img = img.convert("L") if k == 1 else img.convert("CMYK") if k == 2 else img
        img.save(voc / "JPEGImages" / f"{image_id}.jpg", quality=95)
        (voc / "Annotations" / f"{image_id}.xml").write_text(_xml(image_id, objects))
    for name, ids in splits.items():
        (voc / "ImageSets" / "Main" / f"{name}.txt").write_text("\n".join(ids) + "\n")
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(splits["train"] + splits["val"]) + "\n")
    return root


def test_targets_from_xml_and_the_difficult_rule(tmp_path):
    """Hand-read from the XML above: image 1 has a cat and a difficult-only dog; image 3 a dog (one difficult, one
    not) and a difficult-only person. Without difficult objects the difficult-only classes are IGNORE (-1), with
    them they are positives; every other class is 0. The images (greyscale, CMYK too) load as uint8 RGB."""
    make_voc(tmp_path)
    c = VOC_CLASSES.index
    ds = VOCClassification(tmp_path, "train")
    t = ds.target_matrix
    assert t.shape == (5, 20)
    assert t[0, c("cat")] == 1 and t[0, c("dog")] == IGNORE
    assert t[2, c("dog")] == 1 and t[2, c("person")] == IGNORE
    assert int((t != 0).sum()) == 8  # 2 + 1 + 2 + 2 + 1 non-zero entries; the other 92 are absent classes
    with_difficult = VOCClassification(tmp_path / "VOCdevkit", "train", include_difficult=True).target_matrix
    assert with_difficult[0, c("dog")] == 1 and with_difficult[2, c("person")] == 1
    assert torch.equal(with_difficult.clamp(min=0), with_difficult) and int(with_difficult.sum()) == 8
    assert len(VOCClassification(tmp_path / "VOCdevkit" / "VOC2012", "trainval")) == 8
    from zfnet_exp.data.transforms import eval_transform

    ds.transform = eval_transform(32)
    for i in (1, 2):  # greyscale, CMYK
        image, target, index = ds[i]
        assert image.dtype == torch.uint8 and image.shape == (3, 32, 32) and index == i
        assert torch.equal(target, t[i])


def test_layout_errors(tmp_path):
    """A missing folder, a missing sub-folder, an unknown split, and evaluation images that are also training
    images each say what is expected and what to set."""
    with pytest.raises(DataError, match=r"(?s)nope does not exist.*data\.root=.*VOCdevkit/VOC2012/.*Annotations/"):
        find_voc_dir(tmp_path / "nope")
    (tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages").mkdir(parents=True)
    with pytest.raises(DataError, match=r"lacks Annotations, ImageSets/Main"):
        find_voc_dir(tmp_path)
    make_voc(tmp_path)
    with pytest.raises(DataError, match=r"VOC image set 'test' is not one of train, val, trainval"):
        VOCClassification(tmp_path, "test")
    with pytest.raises(DataError, match=r"train_split=trainval and data\.eval_split=val share 3 images"):
        VOCDataModule(root=str(tmp_path), train_split="trainval", eval_split="val", image_size=32).setup()


def test_average_precision_against_sklearn_and_by_hand():
    """AP per class equals sklearn.metrics.average_precision_score (the independent oracle) on the entries that
    are not ignored; and one tiny case by hand: scores .9 .8 .7 .6 with labels 1 0 1 0 -> precision at the two
    recalls 1/2, 2/2 -> AP = (1 + 2/3) / 2 (and 1 for a second class ranked perfectly)."""
    from sklearn.metrics import average_precision_score

    scores = torch.tensor([[0.9, 0.9], [0.8, 0.8], [0.7, 0.7], [0.6, 0.6]])
    hand = average_precision(scores, torch.tensor([[1, 1], [0, 1], [1, 0], [0, 0]]))
    assert hand.tolist() == pytest.approx([(1 + 2 / 3) / 2, 1.0])

    g = torch.Generator().manual_seed(0)
    scores = torch.rand(40, 5, generator=g)
    targets = (torch.rand(40, 5, generator=g) < 0.4).long()
    targets[torch.rand(40, 5, generator=g) < 0.15] = IGNORE
    targets[0] = 1  # every class has a positive
    ap = average_precision(scores, targets)
    for k in range(5):
        keep = targets[:, k] != IGNORE
        expected = average_precision_score(targets[keep, k].numpy(), scores[keep, k].numpy())
        assert float(ap[k]) == pytest.approx(expected, abs=1e-6)
    assert float(ap.mean()) == pytest.approx(np.mean([float(v) for v in ap]))
