"""Bad data never costs a run: unreadable files are skipped (batches stay full) and counted across DataLoader
worker processes, ``strict=True`` names the file, the statistics pass skips them too, and layout problems stop
at start with the expected tree and the config key to set."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from image_files import image_folder, write_not_an_image, write_truncated_jpeg
from PIL import Image

from zfnet_exp.data import ImageFolderDataModule, SampleList, read_rgb
from zfnet_exp.data.folder import SkippedImageWarning, UnreadableImage
from zfnet_exp.errors import DataError


@pytest.fixture()
def bad_folder(tmp_path):
    """2 classes x 4 images, plus a truncated JPEG and an HTML page named .JPEG in the training split."""
    root = image_folder(tmp_path / "ds", per_class=4)
    write_truncated_jpeg(root / "train" / "a" / "zz_truncated.jpg")
    write_not_an_image(root / "train" / "b" / "zz_html.JPEG")
    return root


def _pil_decodes(path: str) -> bool:
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except OSError:  # PIL.UnidentifiedImageError and truncated-file errors are OSErrors
        return False


def test_read_rgb_decodes_grey_and_cmyk_and_names_unreadable_files(tmp_path, bad_folder):
    """Reference: PIL's own conversion of the same files; a truncated or non-image file raises naming it."""
    grey, cmyk = bad_folder / "train" / "a" / "0.jpg", bad_folder / "train" / "a" / "1.jpg"
    assert Image.open(grey).mode == "L" and Image.open(cmyk).mode == "CMYK"
    for f in (grey, cmyk):
        img = read_rgb(f)
        assert img.mode == "RGB" and np.array_equal(np.asarray(img), np.asarray(Image.open(f).convert("RGB")))
    for name in ("a/zz_truncated.jpg", "b/zz_html.JPEG"):
        with pytest.raises(UnreadableImage, match=name.split("/")[1]):
            read_rgb(bad_folder / "train" / name)


def test_unreadable_files_are_skipped_and_counted_across_workers(bad_folder, tmp_path):
    """Two real worker processes load every training image: each batch is full, every item is a readable
    image whose returned index points at itself, and the main process sees exactly the 2 bad files."""
    dm = ImageFolderDataModule(
        root=str(bad_folder), image_size=32, batch_size=5, num_workers=2, mean=[0.5] * 3, std=[0.25] * 3
    )
    dm.setup("fit")
    loader = torch.utils.data.DataLoader(dm.train_set, batch_size=5, num_workers=2, shuffle=False)
    batches = list(loader)
    assert [len(b[0]) for b in batches] == [5, 5]  # 10 items, none dropped
    samples = dm.train_set.samples
    bad = {i for i, (p, _) in enumerate(samples) if "zz_" in p}
    assert len(bad) == 2
    returned = torch.cat([b[2] for b in batches]).tolist()
    labels = torch.cat([b[1] for b in batches]).tolist()
    # reference: which files PIL itself can decode, and for each position the first decodable one at or after it
    # (wrapping); the item at that position is that file, labelled as that file
    decodable = [_pil_decodes(p) for p, _ in samples]
    assert [i for i, ok in enumerate(decodable) if not ok] == sorted(bad)
    n = len(samples)
    expected = [next((i + k) % n for k in range(n) if decodable[(i + k) % n]) for i in range(n)]
    assert returned == expected and set(returned).isdisjoint(bad)
    assert labels == [samples[j][1] for j in expected]
    assert sorted(p.split("/")[-1] for p in dm.skipped_files) == ["zz_html.JPEG", "zz_truncated.jpg"]
    assert all(r for r in dm.skipped_files.values())  # with the reason


def test_skip_warns_once_per_file_and_strict_names_the_file(bad_folder):
    """In-process: one SkippedImageWarning per bad file however often it is met; strict=True raises a
    DataError naming it instead."""
    samples = [
        (str(bad_folder / "train" / "a" / "zz_truncated.jpg"), 0),
        (str(bad_folder / "train" / "a" / "2.jpg"), 0),
    ]
    ds = SampleList(samples, ["a"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            image, label, index = ds[0]
    assert index == 1 and image.size == Image.open(samples[1][0]).size
    assert len([w for w in caught if issubclass(w.category, SkippedImageWarning)]) == 1
    assert "zz_truncated.jpg" in str(caught[0].message) and len(ds.skipped) == 1
    with pytest.raises(DataError, match=r"zz_truncated\.jpg.*data\.strict=false"):
        SampleList(samples, ["a"], strict=True)[0]
    # through a DataLoader worker process: still a DataError (exit code 2), one line, no worker traceback
    loader = torch.utils.data.DataLoader(SampleList(samples, ["a"], strict=True), batch_size=2, num_workers=1)
    with pytest.raises(DataError) as e:
        next(iter(loader))
    assert str(e.value).startswith("Cannot read image") and "zz_truncated.jpg" in str(e.value)
    assert "Traceback" not in str(e.value) and "\n" not in str(e.value)


def test_training_run_survives_bad_files_and_reports_them(bad_folder, tmp_path, data_dir, capsys):
    """End to end through ``train.py``'s task (statistics pass, one epoch): the run finishes,
    metrics.csv has data/skipped_files = 2 (the two files planted by hand), the summary says so, and
    skipped_files.txt in the run folder names both."""
    import csv

    from helpers import compose_train

    from zfnet_exp.tasks.runner import run_task
    from zfnet_exp.tasks.train import train

    run_dir = tmp_path / "run"
    cfg = compose_train(
        [
            "debug=smoke",
            "data=imagefolder",
            f"data.root={bad_folder}",
            "data.image_size=64",
            "data.batch_size=5",
            "data.num_workers=0",
            "callbacks=none",
            "logger=csv",
        ],
        run_dir,
        data_dir,
    )
    metrics = run_task(train, cfg)
    assert metrics["data/skipped_files"] == 2
    with (run_dir / "metrics.csv").open() as f:
        assert float(list(csv.DictReader(f))[-1]["data/skipped_files"]) == 2
    listed = (run_dir / "skipped_files.txt").read_text()
    assert "zz_truncated.jpg" in listed and "zz_html.JPEG" in listed
    assert "skipped    : 2 unreadable image file(s)" in capsys.readouterr().out


def test_every_imagefolder_layout_error_names_the_problem_key_and_tree(tmp_path):
    """Each wrong layout stops at setup (before any model) with its problem, data.root= and the expected tree
    (reference: the layout written by hand in each case)."""

    def err(root, **kw):
        with pytest.raises(DataError) as e:
            ImageFolderDataModule(root=None if root is None else str(root), num_workers=0, **kw).setup("fit")
        msg = str(e.value)
        assert "data.root=" in msg and "├── train/" in msg and "<class A>/" in msg, msg
        return msg

    assert "data.root is not set" in err(None)
    assert "does not exist" in err(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "img.jpg").write_bytes(b"")
    assert "has no 'train' sub-folder (found: ['img.jpg'])" in err(tmp_path / "flat")
    (tmp_path / "noclass" / "train").mkdir(parents=True)
    assert "has no class sub-folders" in err(tmp_path / "noclass")
    (tmp_path / "noimg" / "train" / "a").mkdir(parents=True)
    (tmp_path / "noimg" / "train" / "a" / "notes.txt").write_text("x")
    assert "has class folders but no images" in err(tmp_path / "noimg")
    root = image_folder(tmp_path / "emptyclass", per_class=1)
    (root / "train" / "c").mkdir()
    (root / "val" / "c").mkdir()
    assert "Found no valid file for the classes c" in err(root)
    root = image_folder(tmp_path / "extra", per_class=1)
    image_folder(root, classes=("z",), per_class=1, splits=("val",))
    assert "different class folders (e.g. ['z'])" in err(root)
