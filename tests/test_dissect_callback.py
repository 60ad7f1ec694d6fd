"""The dissect callback in the session's tiny training run (``diag_run``), and ``analysis=dissect`` on shapes,
VOC-layout and Broden-layout concept data (generated fixtures in the real on-disk layouts).

References: the callback's last-epoch result against an independent offline :func:`dissect` of the saved
checkpoint (its own forward pass over the same images); the figure headings against the dissection JSON; the
VOC and Broden readers against the label numbers the fixtures were written with.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import DIAG_LAYERS, run_analysis, run_entry_task, wandb_history
from PIL import Image
from torchvision import transforms as T

from zfnet_exp.data.broden import BrodenConcepts, decode_labels
from zfnet_exp.data.concepts import SHAPES_CONCEPTS, ShapesConcepts
from zfnet_exp.data.normalize import Normalizer
from zfnet_exp.data.transforms import eval_transform
from zfnet_exp.data.voc import VOC_CLASSES, VOCSegmentationConcepts
from zfnet_exp.diagnostics.dissect import dissect
from zfnet_exp.runs import read_checkpoint


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _last(folder: Path, suffix: str = ".json") -> Path:
    return max(folder.glob(f"step*{suffix}"))


def test_callback_logs_every_epoch_and_matches_an_offline_dissection(diag_run):
    diag = diag_run / "diagnostics"
    with (diag_run / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("dissect/conv5/detectors")]
    assert len(rows) == 2  # both epochs
    for key in ("detectors", "unique_concepts", "object", "part", "edge", "texture", "colour", "clutter"):
        assert all(r[f"dissect/conv5/{key}"] != "" for r in rows), key
    tables = sorted((diag / "dissect" / "units").glob("step*.csv"))
    assert len(tables) == 3  # the initial weights (at_init, step 0, epoch 0) and both epochs
    with tables[0].open() as f:
        assert tables[0].name == "step0000000.csv" and {u["epoch"] for u in csv.DictReader(f)} == {"0"}
    with tables[-1].open() as f:
        units = list(csv.DictReader(f))
    assert set(units[0]) >= {"epoch", "layer", "unit", "concept", "iou"}
    assert {u["layer"] for u in units} == set(DIAG_LAYERS) and {u["epoch"] for u in units} == {"2"}

    # the last epoch against an independent offline dissection of the saved weights
    ckpt = read_checkpoint(diag_run / "checkpoints" / "last.ckpt")
    model, data = ckpt.model("cpu"), ckpt.data
    crop = int(data["image_size"])
    transform = T.Compose([eval_transform(crop), Normalizer.from_record(data)])
    ds = ShapesConcepts.from_folder(data["root"], "val", crop, transform=transform, mask_size=crop // 2)
    ref = dissect(model, ds, DIAG_LAYERS, SHAPES_CONCEPTS.names, categories=SHAPES_CONCEPTS.categories)
    for layer in DIAG_LAYERS:
        logged = _json(_last(diag / "diag" / layer / "dissect"))
        assert logged["num_images"] == len(ds) and logged["mask_size"] == [crop // 2] * 2
        np.testing.assert_allclose(logged["best_iou"], ref[layer].best_iou.numpy(), atol=2e-3)
        agree = np.mean([a == b for a, b in zip(logged["label"], ref[layer].label)])
        assert agree > 0.95, (layer, agree)
        assert int(rows[-1][f"dissect/{layer}/detectors"].split(".")[0]) == logged["detectors"]
        # the top-9 and evolution figures of the same step head each map with this dissection's label and IoU
        head = _json(_last(diag / "diag" / layer / "top9"))
        step = _last(diag / "diag" / layer / "dissect").name
        assert _last(diag / "diag" / layer / "top9").name == step
        for c, h in zip(head["maps"], head["headings"]):
            lab, iou = logged["label"][c], logged["best_iou"][c]
            assert h == (f"map {c} · {lab} · IoU {iou:.2f}" if lab else f"map {c} · no detector (IoU {iou:.2f})")
        evo = _json(_last(diag / "diag" / layer / "evolution"))
        assert len(evo["headings"]) == len(evo["records"][-1]["maps"])
    logged = wandb_history(diag_run)
    assert "dissect/conv5/detectors" in logged
    assert logged.get("dissect/units._type") == "table-file"
    assert logged.get("diag/conv5/dissect._type") == "images/separated"


def test_analysis_dissect_on_shapes_labels_the_checkpoint(diag_run, tmp_path):
    out = run_analysis(diag_run, tmp_path, "analysis=dissect", "analysis.layers=[conv5]", "num_images=5")
    assert set(out) == {"conv5"} and out["conv5"]["mask_size"] == [32, 32]
    assert (tmp_path / "diagnostics" / "diag" / "conv5" / "dissect" / "step0000000.png").is_file()
    with next((tmp_path / "diagnostics" / "dissect" / "units").glob("*.csv")).open() as f:
        assert {r["source"] for r in csv.DictReader(f)} == {"shapes"}


# --------------------------------------------------------------------------- VOC and Broden fixtures


def _voc_fixture(root: Path, n: int = 4) -> list[np.ndarray]:
    """VOCdevkit/VOC2012 with JPEGImages, palette SegmentationClass PNGs (a class square with a 255 void border
    on background 0) and ImageSets/Segmentation/val.txt, as the VOC archive unpacks."""
    voc = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation", "ImageSets/Main", "Annotations"):
        (voc / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    segs, ids = [], []
    palette = [v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)]
    for i in range(n):
        image_id = f"2007_{i:06d}"
        seg = np.zeros((60, 80), np.uint8)
        seg[10:40, 20:60] = 255
        seg[12:38, 22:58] = 1 + (i % 20)
        im = Image.fromarray(seg, mode="P")
        im.putpalette(palette)
        im.save(voc / "SegmentationClass" / f"{image_id}.png")
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(voc / "JPEGImages" / f"{image_id}.jpg")
        segs.append(seg)
        ids.append(image_id)
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids) + "\n")
    return segs


def test_voc_segmentation_concepts_read_the_class_indices(tmp_path):
    segs = _voc_fixture(tmp_path)
    ds = VOCSegmentationConcepts(tmp_path, "val", crop_size=48, mask_size=48)
    assert len(ds.concepts) == 21 and ds.concepts[1] == VOC_CLASSES[0]
    _, labels, _ = ds[2]
    assert labels.shape == (1, 48, 48)
    # class 3 (index 2 + 1) inside, background (concept 0 -> label 1) outside, void (255) -> 0 on the border
    assert set(labels.unique().tolist()) == {0, 1, 1 + 3}
    assert int(labels[0, 24, 24]) == 1 + 3 and int(labels[0, 0, 0]) == 1
    assert segs[2][25, 40] == 3


def _broden_fixture(root: Path, n: int = 4) -> None:
    """A NetDissect-Lite Broden folder: index.csv, label.csv, category.csv, c_<category>.csv, images and masks
    (RGB PNG, R + 256 * G = label number; one label above 255 to use the G channel) at half the image size."""
    (root / "images" / "fix").mkdir(parents=True)
    labels = [(1, "red", "color(3)"), (2, "dog", "object(4)"), (300, "dog-leg", "part(2)"), (4, "dotted", "texture(1)")]
    with (root / "label.csv").open("w") as f:
        f.write("number,name,category,frequency,coverage,syns\n0,-,,0,0,\n")
        for number, name, cat in labels:
            f.write(f'{number},{name},"{cat}",1,0.1,\n')
    with (root / "category.csv").open("w") as f:
        f.write("name,first,last,count,frequency\ncolor,1,1,1,3\nobject,2,2,1,4\npart,300,300,1,2\ntexture,4,4,1,1\n")
    for cat in ("color", "object", "part", "texture"):
        (root / f"c_{cat}.csv").write_text("code,number,name,frequency,coverage\n")
    rng = np.random.default_rng(1)
    rows = ["image,split,ih,iw,sh,sw,color,object,part,texture"]
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "images" / "fix" / f"{i}.jpg")
        obj = np.zeros((32, 32, 3), np.uint8)
        obj[8:24, 8:24, 0] = 2  # dog
        part = np.zeros((32, 32, 3), np.uint8)
        part[16:24, 8:16] = (300 % 256, 300 // 256, 0)  # dog-leg, label 300
        Image.fromarray(obj).save(root / "images" / "fix" / f"{i}_object.png")
        Image.fromarray(part).save(root / "images" / "fix" / f"{i}_part.png")
        rows.append(f"fix/{i}.jpg,train,64,64,32,32,,fix/{i}_object.png,fix/{i}_part.png,4")
    (root / "index.csv").write_text("\n".join(rows) + "\n")


def test_broden_concepts_decode_r_plus_256_g_and_image_level_labels(tmp_path):
    _broden_fixture(tmp_path)
    assert decode_labels(tmp_path / "images" / "fix" / "0_part.png")[20, 10] == 300
    ds = BrodenConcepts(tmp_path, crop_size=64, mask_size=32)
    assert ds.concepts == ["red", "dog", "dog-leg", "dotted"]
    assert ds.categories == ["color", "object", "part", "texture"]
    _, labels, _ = ds[0]
    assert labels.shape == (3, 32, 32)  # object, part, texture maps of this image
    names = {int(v): ds.concepts[int(v) - 1] for v in labels.unique() if v > 0}
    assert set(names.values()) == {"dog", "dog-leg", "dotted"}
    dotted = ds.concepts.index("dotted") + 1
    assert (labels == dotted).any(0).all()  # the image-level texture label covers the whole image


@pytest.mark.parametrize("source", ["voc", "broden"])
def test_analysis_dissect_on_real_layouts(diag_run, tmp_path, source):
    data = tmp_path / source
    (_voc_fixture if source == "voc" else _broden_fixture)(data)
    out = run_analysis(
        diag_run,
        tmp_path / "out",
        "analysis=dissect",
        f"analysis.concepts={source}",
        f"analysis.concepts_root={data}",
        "analysis.layers=[conv1]",
    )
    summary = _json(tmp_path / "out" / "diagnostics" / "diag" / "conv1" / "dissect" / "step0000000.json")
    assert out["conv1"]["detectors"] == summary["detectors"] and summary["num_images"] == 4
    assert len(summary["concepts"]) == (21 if source == "voc" else 4)


def test_analysis_dissect_without_a_concept_folder_is_one_paragraph(diag_run, tmp_path):
    """``python analyze.py ckpt=<run> analysis=dissect analysis.concepts=voc`` without its folder, in process
    (``run_entry_task``)."""
    overrides = [f"ckpt={diag_run}", "analysis=dissect", "analysis.concepts=voc", "logger=none"]
    code, err = run_entry_task("analyze", overrides, tmp_path)
    assert code == 2, err[-2000:]
    assert "error: " in err and "analysis.concepts_root" in err


def test_non_shapes_data_gets_one_line_and_no_work():
    from zfnet_exp.callbacks.dissect import Dissect

    class _DM:  # a datamodule without generated concepts (ImageNet, VOC classification, a folder)
        val_set = None

    class _Trainer:
        datamodule = _DM()

    cb = Dissect()
    assert cb._prepare(_Trainer()) is False and cb._prepare(_Trainer()) is False


def test_benchmark_command_runs_the_callbacks_work(capsys):
    from zfnet_exp.benchmarks.dissect import main

    out = main(["--val-images", "12", "--images", "6", "--batch", "4", "--repeats", "1", "--size", "64"])
    assert out["dissect_s"] > 0 and out["plain_s"] > 0
    assert "overhead per epoch" in capsys.readouterr().out
