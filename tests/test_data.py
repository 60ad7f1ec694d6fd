"""Datamodules: batches as the model sees them, and the errors a user gets for bad data."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from zfnet_exp.data import ImageFolderDataModule, ShapesDataModule
from zfnet_exp.data.transforms import eval_transform, resize_for, train_transform
from zfnet_exp.errors import DataError


def _folder(root, classes=("a", "b"), per_class=3, size=40):
    for split in ("train", "val"):
        for i, c in enumerate(classes):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                Image.new("RGB", (size + k, size), (40 * i + 10, 100, 200 - k)).save(root / split / c / f"{k}.jpg")
    return root


def test_shapes_batches(data_dir):
    dm = ShapesDataModule(
        cache_dir=str(data_dir), image_size=64, train_per_class=3, val_per_class=2, batch_size=4, num_workers=0
    )
    dm.prepare_data()
    dm.setup("fit")
    x, y, idx = next(iter(dm.val_dataloader()))
    assert x.shape == (4, 3, 64, 64) and y.dtype == torch.long and idx.tolist() == [0, 1, 2, 3]
    assert dm.num_classes == 10 and len(dm.val_set) == 20
    # the image at a returned index is the one in the batch (diagnostics rely on this)
    assert torch.equal(dm.val_set[int(idx[2])][0], x[2])


def test_shapes_object_size_is_configurable_and_checked(data_dir):
    from zfnet_exp.errors import UserError

    dm = ShapesDataModule(
        cache_dir=str(data_dir),
        image_size=64,
        train_per_class=1,
        val_per_class=1,
        min_radius=0.1,
        max_radius=0.12,
        batch_size=2,
        num_workers=0,
    )
    assert (dm.spec.min_radius, dm.spec.max_radius) == (0.1, 0.12)
    assert (
        dm.spec.key()
        != ShapesDataModule(
            cache_dir=str(data_dir), image_size=64, train_per_class=1, val_per_class=1, batch_size=2, num_workers=0
        ).spec.key()
    )
    # 0.45 of the 73-px drawn side cannot fit in the 64-px crop (limit 32/73 = 0.438)
    with pytest.raises(UserError, match=r"data.max_radius=0.45 are not a valid object size.*<= 0.438"):
        ShapesDataModule(cache_dir=str(data_dir), image_size=64, max_radius=0.45, batch_size=2, num_workers=0)


def test_transforms_scale_the_paper_geometry():
    from zfnet_exp.data.normalize import Normalizer

    assert resize_for(224) == 256 and resize_for(112) == 128
    img = Image.new("RGB", (300, 256))
    mean, std = [0.5] * 3, [0.25] * 3
    x = train_transform(224)(img)
    assert x.shape == (3, 224, 224) and x.dtype == torch.uint8  # batches stay uint8 until the device
    out = Normalizer(mean, std, "paper")(eval_transform(224)(Image.new("RGB", (256, 256), (128, 128, 128))))
    # paper normalization: raw mean-subtracted pixels, (128/255 - 0.5) * 255 = 0.5
    assert torch.allclose(out, torch.full_like(out, 0.5), atol=1e-4)


def test_imagefolder_stats_and_loading(tmp_path):
    root = _folder(tmp_path / "ds")
    dm = ImageFolderDataModule(
        root=str(root), image_size=32, batch_size=2, num_workers=0, cache_dir=str(tmp_path / "cache")
    )
    dm.setup("fit")
    assert dm.num_classes == 2 and dm.classes == ["a", "b"]
    assert len(dm.mean) == 3 and (tmp_path / "cache" / "stats").is_dir()
    x, y, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 3, 32, 32)


def test_missing_folder_error_names_problem_and_fix(tmp_path):
    dm = ImageFolderDataModule(root=str(tmp_path / "nope"), num_workers=0)
    with pytest.raises(DataError, match="does not exist") as e:
        dm.setup("fit")
    assert "data.root=" in str(e.value) and "├── train/" in str(e.value)


def test_wrong_layout_error(tmp_path):
    (tmp_path / "ds" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="has no 'train' sub-folder"):
        ImageFolderDataModule(root=str(tmp_path / "ds"), num_workers=0).setup("fit")


def test_mismatched_classes_error(tmp_path):
    root = _folder(tmp_path / "ds")
    (root / "val" / "c").mkdir()
    Image.new("RGB", (8, 8)).save(root / "val" / "c" / "x.png")
    with pytest.raises(DataError, match="different class folders"):
        ImageFolderDataModule(root=str(root), num_workers=0, mean=[0.5] * 3, std=[0.2] * 3).setup("fit")


def test_corrupt_image_error_names_the_file(tmp_path):
    root = _folder(tmp_path / "ds")
    bad = root / "train" / "a" / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    dm = ImageFolderDataModule(
        root=str(root), image_size=32, batch_size=2, num_workers=0, mean=[0.5] * 3, std=[0.2] * 3, strict=True
    )
    dm.setup("fit")
    index = [i for i, (p, _) in enumerate(dm.train_set.samples) if p.endswith("broken.jpg")][0]
    with pytest.raises(DataError, match="broken.jpg.*corrupt"):
        dm.train_set[index]
