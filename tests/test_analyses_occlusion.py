"""Offline analyses (occlusion, invariance, correspondence, attribution, faithfulness) on a tiny trained
checkpoint, run in-process through ``zfnet_exp.tasks.analyze.analyze``, and the mask/keypoint mapping into
the network input frame."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_analysis, wandb_history
from PIL import Image

from zfnet_exp.data.masks import load_mask, map_point, map_points, mapped_annotation
from zfnet_exp.data.transforms import eval_geometry


@pytest.fixture(scope="module")
def tiny_run(diag_run) -> Path:
    """The session's shared tiny training run (two epochs, top-9/evolution/filter callbacks)."""
    return diag_run


_analyze = run_analysis


def _csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_occlusion_analysis(tiny_run, tmp_path):
    _analyze(
        tiny_run, tmp_path, "analysis=occlusion", "analysis.num_probes=2", "analysis.patch=32", "analysis.stride=16"
    )
    rows = _csv(tmp_path / "occlusion.csv")
    assert len(rows) == 2 and {"index", "clean_prob", "min_prob", "min_y", "min_x"} <= set(rows[0])
    for r in rows:
        d = tmp_path / "diagnostics" / "analysis" / "occlusion" / f"{int(r['index']):06d}"
        payload = json.loads((d / "step0000000.json").read_text())
        assert np.array(payload["prob"]).shape == (3, 3) and np.array(payload["activation"]).shape == (3, 3)
        with Image.open(d / "step0000000.png") as im:
            assert im.width > 3 * im.height  # five panels side by side


def test_invariance_analysis(tiny_run, tmp_path):
    _analyze(
        tiny_run,
        tmp_path,
        "analysis=invariance",
        "analysis.num_probes=2",
        "analysis.amounts={translation:[-8,0,8],scale:[1.0,1.5],rotation:[0,90]}",
    )
    rows = _csv(tmp_path / "invariance.csv")
    assert len(rows) == 2 * (3 + 2 + 2)
    assert {"transform", "value", "image", "label", "dist_conv1", "dist_fc7", "prob"} <= set(rows[0])
    for kind in ("translation", "scale", "rotation"):  # through the sink, like every other figure
        assert len(list(tmp_path.rglob(f"analysis/invariance/{kind}/step*.png"))) == 1, kind
    ident = [r for r in rows if r["transform"] == "translation" and float(r["value"]) == 0]
    assert all(float(r["dist_fc7"]) == 0 for r in ident)


def test_correspondence_analysis(tiny_run, tmp_path):
    _analyze(
        tiny_run, tmp_path, "analysis=correspondence", "images=train", "analysis.subset_size=2", "analysis.repeats=2"
    )
    rows = _csv(tmp_path / "correspondence.csv")
    assert {(r["region"], r["layer"]) for r in rows} == {
        (p, k) for p in ("tip", "tail", "random") for k in ("conv5", "fc7")
    }
    assert all(0 <= float(r["mean"]) <= 1 for r in rows)
    meta = json.loads((tmp_path / "correspondence.json").read_text())
    assert meta["class"] == "arrow" and meta["n_images"] == 3


def test_attribution_analysis(tiny_run, tmp_path):
    _analyze(
        tiny_run,
        tmp_path,
        "analysis=attribution",
        "analysis.num_probes=2",
        "analysis.patch=32",
        "analysis.stride=16",
        "analysis.methods=[deconvnet_zf,gradcam,saliency,occlusion]",
    )
    rows = _csv(tmp_path / "attribution_peaks.csv")
    assert len(rows) == 2 * 4 and {r["method"] for r in rows} == {"deconvnet_zf", "gradcam", "saliency", "occlusion"}
    pngs = list((tmp_path / "diagnostics" / "analysis" / "attribution").glob("*/step0000000.png"))
    assert len(pngs) == 2


def test_faithfulness_analysis(tiny_run, tmp_path, wandb_home):
    res = _analyze(
        tiny_run,
        tmp_path,
        "analysis=faithfulness",
        "num_images=3",
        "analysis.n_steps=4",
        "analysis.patch=32",
        "analysis.stride=16",
        "analysis.methods=[occlusion,occlusion_grid,saliency,gradcam,deconvnet_zf]",
        "logger=wandb",
    )
    rows = _csv(tmp_path / "faithfulness.csv")
    assert [r["method"] for r in rows] == [
        "occlusion",
        "occlusion_grid",
        "saliency",
        "gradcam",
        "deconvnet_zf",
        "center",
        "random",
    ]
    for r in rows:
        assert 0 <= float(r["deletion_auc"]) <= 1 and 0 <= float(r["insertion_auc"]) <= 1
        assert 0 <= float(r["pointing_lo"]) <= float(r["pointing_acc"]) <= float(r["pointing_hi"]) <= 1
        assert int(r["n"]) == 3
        assert float(r["tolerance_px"]) == pytest.approx(15 * 64 / 224)
    meta = json.loads((tmp_path / "faithfulness.json").read_text())
    assert meta["n_images"] == 3 and len(meta["indices"]) == 3 and len(res["rows"]) == 7
    # the same table went to the logger: the offline W&B run holds a 7-row table under analysis/faithfulness
    logged = wandb_history(tmp_path)
    assert logged["analysis/faithfulness._type"] == "table-file" and logged["analysis/faithfulness.nrows"] == 7
    assert (tmp_path / "diagnostics" / "analysis" / "faithfulness" / "step0000000.csv").is_file()


def test_faithfulness_pointing_only_runs_no_causal_metrics(tiny_run, tmp_path):
    _analyze(
        tiny_run,
        tmp_path,
        "analysis=faithfulness",
        "num_images=4",
        "analysis.metrics=[pointing]",
        "analysis.methods=[saliency]",
    )
    rows = _csv(tmp_path / "faithfulness.csv")
    assert [r["method"] for r in rows] == ["saliency", "center", "random"]
    assert "deletion_auc" not in rows[0] and "insertion_auc" not in rows[0]
    # the centre baseline scores 0 on the images where it misses, by definition of that subset
    centre = rows[1]
    assert int(centre["n_offcentre"]) == round(4 * (1 - float(centre["pointing_acc"])))
    if int(centre["n_offcentre"]):
        assert float(centre["pointing_acc_offcentre"]) == 0.0


def test_faithfulness_rejects_unknown_occlusion_view(tiny_run, tmp_path):
    from zfnet_exp.errors import UserError

    with pytest.raises(
        UserError, match=r"analysis\.methods=\[occlusion_max\] is not valid: expected one of .*occlusion_grid"
    ):
        run_analysis(tiny_run, tmp_path, "analysis=faithfulness", "num_images=2", "analysis.methods=[occlusion_max]")


def test_folder_with_another_class_count_is_a_clear_error(tiny_run, tmp_path):
    """images=<folder> whose class folders do not match the checkpoint's classes (reference: the 10 shapes
    classes the tiny run trained on, against a 2-class folder of real PNGs) stops before any analysis runs."""
    from zfnet_exp.errors import UserError

    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(tmp_path / "imgs" / cls / "x.png")
    with pytest.raises(UserError, match=r"has 2 class folders, but the checkpoint's model was trained on 10 classes"):
        run_analysis(tiny_run, tmp_path / "out", "analysis=occlusion", f"images={tmp_path / 'imgs'}")
    assert not list((tmp_path / "out").rglob("*.png"))  # nothing was drawn


# ----------------------------------------------------------------------------------------- masks


def test_point_map_matches_eval_geometry():
    """A small block drawn at (x, y) lands where ``map_point`` says after the eval geometry (incl. resize)."""
    for size, (x, y) in [((73, 73), (40, 20)), ((120, 90), (70, 50)), ((90, 130), (30, 80))]:
        arr = np.zeros((size[1], size[0]), np.uint8)
        arr[y - 3 : y + 4, x - 3 : x + 4] = 255
        out = np.asarray(eval_geometry(64)(Image.fromarray(arr))) > 127
        ys, xs = np.nonzero(out)
        mx, my = map_point((x + 0.5, y + 0.5), size, 64)  # pixel centre
        assert abs(xs.mean() + 0.5 - mx) < 1.0 and abs(ys.mean() + 0.5 - my) < 1.0, (size, xs.mean(), mx)
    # by hand: 73 px needs no resize (resize_for(64) = 73), the 64 px centre crop starts at round(9 / 2) = 4
    # (torchvision rounds half to even); points outside the crop keep their (negative) coordinates
    torch.testing.assert_close(
        map_points([(10, 20), (2, 1)], (73, 73), 64), torch.tensor([[6.0, 16.0], [-2.0, -3.0]], dtype=torch.float64)
    )


def test_mask_is_where_the_object_is(tiny_run):
    """The mapped mask's centroid matches the annotation centre mapped through the eval geometry."""
    from zfnet_exp.runs import build_dataset, load_model

    _, data = load_model(tiny_run)
    ds = build_dataset(data, "val")
    for cls in ("circle", "square"):
        label = ds.classes.index(cls)
        i = ds.targets.index(label)
        mask = load_mask(ds, i, 64)
        assert mask.shape == (64, 64) and mask.any()
        ann = mapped_annotation(ds, i, 64)
        ys, xs = torch.nonzero(mask, as_tuple=True)
        cx, cy = ann["center"]
        assert abs(xs.double().mean() + 0.5 - cx) < 1.5 and abs(ys.double().mean() + 0.5 - cy) < 1.5
        assert mask[int(cy), int(cx)]
