"""ImageNet in its real on-disk layouts (generated JPEGs, a scipy-written devkit ``meta.mat``, Kaggle's CSV
files): labels, human-readable names, the paper's per-pixel mean image, and the layout errors."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from helpers import CONF
from image_files import IMAGENET_SYNSETS, IMAGENET_VAL_TRUTH, imagenet_root, write_not_an_image
from PIL import Image

from zfnet_exp.data import ImageNetDataModule
from zfnet_exp.data import stats as stats_module
from zfnet_exp.errors import DataError

SORTED_WNIDS = sorted(w for w, _, _ in IMAGENET_SYNSETS)
NAMES = ["tench", "crane (n02012849)", "kit fox", "crane (n03126707)"]  # sorted-wnid order, by hand


def _compose_imagenet(root, cache):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "data=imagenet",
                f"data.root={root}",
                f"paths.data_dir={cache}",
                "data.num_classes=null",
                "data.num_workers=0",
            ],
        )
    return instantiate(cfg.data)


@pytest.mark.parametrize("layout", ["folders", "loc", "devkit", "metabin", "kaggle"])
def test_labels_and_class_names_in_every_layout(tmp_path, layout):
    """Reference: the fixture's own ground truth (wnid of every file) and the sorted-wnid order, by hand. The
    devkit's ILSVRC2012_IDs (1..4 in meta.mat order) differ from that order, so reading an ID as a label fails."""
    root = imagenet_root(tmp_path / "imagenet", val="loc" if layout == "kaggle" else layout)
    if layout == "kaggle":  # ILSVRC/Data/CLS-LOC/{train,val}, the CSV files at the top
        nested = root / "ILSVRC" / "Data" / "CLS-LOC"
        nested.mkdir(parents=True)
        for split in ("train", "val"):
            shutil.move(str(root / split), str(nested / split))
    dm = _compose_imagenet(root, tmp_path / "cache") if layout == "devkit" else ImageNetDataModule(root=str(root))
    train, val = dm.build_splits()
    assert train.classes == SORTED_WNIDS
    assert all(label == SORTED_WNIDS.index(path.split("/")[-2]) for path, label in train.samples)
    by_file = {p.split("/")[-1]: label for p, label in val.samples}
    expected = {f"ILSVRC2012_val_{k:08d}.JPEG": SORTED_WNIDS.index(w) for k, w in enumerate(IMAGENET_VAL_TRUTH, 1)}
    assert by_file == expected
    if layout == "devkit":
        ids = {w: i for w, _, i in IMAGENET_SYNSETS}
        assert any(ids[w] - 1 != SORTED_WNIDS.index(w) for w in IMAGENET_VAL_TRUTH)  # the trap is real
    assert train.class_names == val.class_names == (SORTED_WNIDS if layout == "folders" else NAMES)
    image, label, index = val[0]  # a real JPEG through the robust loader
    assert image.mode == "RGB" and (label, index) == (expected[val.samples[0][0].split("/")[-1]], 0)


def _direct_mean_image(files, size):
    """The paper's mean image by hand: each readable file resized (shorter side) and centre-cropped by
    torchvision's functional ops on PIL images, averaged in float64."""
    acc = []
    for f in files:
        try:
            img = Image.open(f).convert("RGB")
        except OSError:
            continue
        acc.append(np.asarray(TF.center_crop(TF.resize(img, size), size), dtype=np.float64))
    return torch.from_numpy(np.mean(acc, 0).transpose(2, 0, 1) / 255.0), len(acc)


def test_mean_image_is_cached_shared_and_subtracted(tmp_path, monkeypatch):
    """Reference: a direct float64 mean over the readable training files (an HTML page named .JPEG is left out
    and counted); three concurrent computations run the pass once (file lock); a second datamodule reads the
    cache; a validation batch is the uint8 centre crop, normalized on the device to the crop minus the mean
    image's centre, by hand; the checkpoint record carries the whole mean image."""
    root = imagenet_root(tmp_path / "imagenet", val="devkit")
    write_not_an_image(root / "train" / SORTED_WNIDS[0] / "broken.JPEG")
    cache = tmp_path / "cache"
    calls = []
    real = stats_module.image_statistics
    monkeypatch.setattr(stats_module, "image_statistics", lambda *a, **k: calls.append(1) or real(*a, **k))

    def make():
        return ImageNetDataModule(
            root=str(root),
            image_size=64,
            batch_size=4,
            num_workers=0,
            cache_dir=str(cache),
            mean_image=True,
            stats_images=None,
            normalization="paper",
        )

    modules = [make() for _ in range(3)]
    threads = [threading.Thread(target=dm.setup, args=("fit",)) for dm in modules]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(calls) == 1 and len(list((cache / "stats").glob("*.pt"))) == 1
    dm = modules[0]
    files = [p for p, _ in dm.train_set.samples]
    direct, n_readable = _direct_mean_image(files, 73)  # resize_for(64) = 73
    assert n_readable == len(files) - 1 and dm.mean_image.shape == (3, 73, 73)
    assert torch.allclose(dm.mean_image.double(), direct, atol=1e-6)
    assert all(torch.equal(m.mean_image, dm.mean_image) for m in modules)
    skipped = [p.split("/")[-1] for m in modules for p in m.skipped_files]  # by the one that computed
    assert skipped == ["broken.JPEG"]
    assert np.allclose(dm.mean, direct.mean((1, 2)).numpy(), atol=1e-5)
    again = make()
    again.setup("fit")
    assert len(calls) == 1 and torch.equal(again.mean_image, dm.mean_image)  # from the cache

    x, y, idx = next(iter(dm.val_dataloader()))  # uint8 until the device
    img = Image.open(dm.val_set.samples[0][0]).convert("RGB")
    crop = torch.from_numpy(np.array(TF.center_crop(TF.center_crop(TF.resize(img, 73), 73), 64))).permute(2, 0, 1)
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 64, 64) and torch.equal(x[0], crop)
    normalized = dm.on_after_batch_transfer([x, y, idx], 0)[0]
    expected = crop.float() - 255 * dm.mean_image[:, 4:68, 4:68]  # the centre of the 73x73 mean: (73-64)//2 = 4
    assert torch.allclose(normalized[0], expected, atol=1e-3)
    assert torch.equal(torch.as_tensor(dm.state_dict()["mean"]), dm.mean_image)  # the checkpoint's record


def _err(root, **kw):
    with pytest.raises(DataError) as e:
        ImageNetDataModule(root=str(root), num_workers=0, **kw).setup("fit")
    return str(e.value)


def test_layout_errors_show_the_tree_and_the_key(tmp_path):
    """Every layout problem names itself, the config key to set and the expected ImageNet tree."""
    tree = "ILSVRC2012_val_00000001.JPEG"
    msg = _err(tmp_path / "missing")
    assert "does not exist" in msg and "data.root=" in msg and tree in msg
    (tmp_path / "empty").mkdir()
    msg = _err(tmp_path / "empty")
    assert "no 'train' sub-folder" in msg and "data.root=" in msg and tree in msg

    root = imagenet_root(tmp_path / "none", val="none")
    msg = _err(root)
    assert "no ground truth" in msg and "data.val_ground_truth=" in msg and tree in msg

    root = imagenet_root(tmp_path / "loc", val="loc")
    extra = root / "val" / "ILSVRC2012_val_00000009.JPEG"
    shutil.copy(root / "val" / "ILSVRC2012_val_00000001.JPEG", extra)
    msg = _err(root)
    assert "1 of the 9 images" in msg and "ILSVRC2012_val_00000009.JPEG" in msg and "data.val_ground_truth=" in msg
    extra.unlink()
    shutil.rmtree(root / "train" / SORTED_WNIDS[0])
    msg = _err(root)
    assert SORTED_WNIDS[0] in msg and "no folder in" in msg and tree in msg

    msg = _err(imagenet_root(tmp_path / "dk", val="devkit"), val_ground_truth=str(tmp_path / "dk" / "train"))
    assert "neither a LOC_val_solution.csv" in msg and "data.val_ground_truth=" in msg

    root = imagenet_root(tmp_path / "noval", val="folders")
    shutil.rmtree(root / "val")
    msg = _err(root)
    assert "no 'val' sub-folder" in msg and tree in msg

    msg = _err(imagenet_root(tmp_path / "count", val="folders"), num_classes=1000)
    assert "data.num_classes=1000" in msg and "4 classes" in msg
