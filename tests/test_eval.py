"""``eval.py``: the 10-crop geometry, ensemble averaging, and end-to-end runs on shapes and on an ImageNet
fixture whose printed errors are checked against a hand computation of the whole protocol."""

from __future__ import annotations

import re

import lightning as L
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TVF
from helpers import CONF, TINY_DATA
from image_files import imagenet_root, write_truncated_jpeg
from PIL import Image

from zfnet_exp.models import LitClassifier
from zfnet_exp.tasks.eval import PAPER_TABLE2, Member, evaluate, paper_row, run_protocols, ten_crop_views
from zfnet_exp.tasks.runner import run_task

STANDARD = {"mean": [0.4, 0.45, 0.5], "std": [0.2, 0.25, 0.3], "normalization": "standard"}


def _boxes(S: int, c: int) -> list[tuple[int, int]]:
    """(top, left) of tl, tr, bl, br, centre, by hand; the centre offset rounds like torchvision's."""
    m = int(round((S - c) / 2.0))
    return [(0, 0), (0, S - c), (S - c, 0), (S - c, S - c), (m, m)]


def _hand_views(x: torch.Tensor, c: int) -> list[torch.Tensor]:
    """The 10 views by slicing: the 5 boxes of the image, then the 5 boxes of its mirror image."""
    S = x.shape[-1]
    return [img[..., t : t + c, left : left + c] for img in (x, x.flip(-1)) for t, left in _boxes(S, c)]


def test_ten_crop_geometry_matches_hand_slicing():
    """Reference: hand-computed boxes at the paper's sizes (256 -> 224: corners at 0/32, centre at 16); each
    flipped view is the mirror image of the crop in the mirrored box."""
    x = torch.arange(2 * 3 * 256 * 256, dtype=torch.int64).view(2, 3, 256, 256)
    views = ten_crop_views(x, 224)
    assert views.shape == (10, 2, 3, 224, 224)
    assert _boxes(256, 224) == [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)]
    for got, want in zip(views, _hand_views(x, 224)):
        assert torch.equal(got, want)
    assert torch.equal(views[5], x[..., 0:224, 32:256].flip(-1))  # flipped top-left = mirrored top-right crop


class _Linear(torch.nn.Module):
    def __init__(self, seed, c, classes):
        super().__init__()
        self.fc = torch.nn.Linear(3 * c * c, classes)
        torch.nn.init.normal_(self.fc.weight, std=0.05, generator=torch.Generator().manual_seed(seed))

    def forward(self, x):
        return self.fc(x.flatten(1))


def _hand_probs(model, x_uint8, record, c):
    """Softmax of every view by hand (own normalization arithmetic), returned as (centre, mean of 10)."""
    x = x_uint8.float()
    x = (x - torch.tensor(record["mean"]).view(3, 1, 1) * 255) / (torch.tensor(record["std"]).view(3, 1, 1) * 255)
    probs = torch.stack([torch.softmax(model(v), -1) for v in _hand_views(x, c)])
    return probs[4], probs.mean(0)


def test_ensemble_averages_the_softmax_of_its_models(tmp_path):
    """Reference: per-image hand computation of each model's 10-view softmax, averaged over views and then over
    models, top-1/top-5 misses counted by hand."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 10, 10), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 7, (12,), generator=g)
    models = [_Linear(s, 8, 7).eval() for s in (1, 2, 3)]
    members = [Member(None, "lin", {}, 7, 8, STANDARD, m) for m in models]
    dataset = list(zip(images, labels, range(12)))
    tallies, ensemble = run_protocols(members, dataset, 8, "cpu", batch_size=5, progress=False, out_dir=tmp_path)
    with torch.no_grad():
        per_model = [_hand_probs(m, images, STANDARD, 8) for m in models]
    ens_center = sum(p[0] for p in per_model) / 3
    ens_ten = sum(p[1] for p in per_model) / 3

    def misses(p, k):
        return int((~(p.topk(k, 1).indices == labels[:, None]).any(1)).sum())

    for tally, (center, ten) in zip(tallies, per_model):
        assert tally.miss == {
            "center": [misses(center, 1), misses(center, 5)],
            "10crop": [misses(ten, 1), misses(ten, 5)],
        }
    assert ensemble.miss == {
        "center": [misses(ens_center, 1), misses(ens_center, 5)],
        "10crop": [misses(ens_ten, 1), misses(ens_ten, 5)],
    }
    assert ensemble.errors()["10crop_top1"] == pytest.approx(100 * misses(ens_ten, 1) / 12)


def test_paper_rows_match_architectures_on_imagenet_only():
    """Reference: paper Table 2 (v3) as transcribed in shared/reference/paper-facts.md section 8."""
    six = ["zfnet"] * 5 + ["zfnet_wide345"]
    assert paper_row(six[::-1], [{}] * 6, "imagenet", 1000, 224)[1:] == (36.0, 14.7, 14.8)
    assert paper_row(["zfnet"], [{}], "imagenet", 1000, 224)[1:3] == (38.4, 16.5)
    assert paper_row(["alexnet"], [{}], "imagenet", 1000, 224)[1:3] == (40.5, 18.1)
    assert paper_row(["zfnet"] * 5, [{}] * 5, "imagenet", 1000, 224)[1:3] == (36.7, 15.3)
    assert paper_row(["zfnet"], [{}], "shapes", 10, 64) is None
    assert paper_row(["zfnet"], [{"fc_units": 2048}], "imagenet", 1000, 224) is None  # a different model
    assert len(PAPER_TABLE2) == 6


# -- end to end ---------------------------------------------------------------------------------------------


def _checkpoint(path, num_classes, input_size, seed, record, arch="zfnet"):
    """A checkpoint as train.py writes it (weights, hyper-parameters, the data record), of an untrained model
    (fc layers of 256 units: a small file)."""
    torch.manual_seed(seed)
    lit = LitClassifier(
        name=arch, num_classes=num_classes, input_size=input_size, init="kaiming", overrides={"fc_units": 256}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": lit.state_dict(),
            "hyper_parameters": dict(lit.hparams),
            "pytorch-lightning_version": L.__version__,
            # as Lightning stores the datamodule's state_dict (the normalization record) under its class name
            "ImageFolderDataModule": {"zfnet_data": 2, **record},
        },
        path,
    )
    return path


def _compose_eval(overrides, run_dir, data_dir):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "eval",
            overrides=[f"paths.data_dir={data_dir}", "logger=csv", "device=cpu", "progress=false", *overrides],
            return_hydra_config=True,
        )
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def _hand_errors(ckpts, files_labels, S, c):
    """The whole protocol by hand for each model and the ensemble: PIL resize + centre crop, normalization from
    the record, 10 slices, softmax averaged; returns {name: (centre top-1, 10-crop top-1, 10-crop top-5) in %}."""
    out, ens_c, ens_t = {}, 0, 0
    labels = torch.tensor([y for _, y in files_labels])
    for i, path in enumerate(ckpts):
        raw = torch.load(path, weights_only=True)
        model = LitClassifier.load_from_checkpoint(path, map_location="cpu").model.eval()
        rec = raw["ImageFolderDataModule"]
        xs = []
        for f, _ in files_labels:
            img = TVF.center_crop(TVF.resize(Image.open(f).convert("RGB"), S), S)
            x = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)
            if torch.as_tensor(rec["mean"]).ndim == 3:  # a per-pixel mean image
                x = x - 255 * torch.as_tensor(rec["mean"])
            else:
                x = x - 255 * torch.tensor(rec["mean"]).view(3, 1, 1)
            if rec["normalization"] == "standard":
                x = x / (255 * torch.tensor(rec["std"]).view(3, 1, 1))
            xs.append(x)
        x = torch.stack(xs)
        with torch.no_grad():
            probs = torch.stack([torch.softmax(model(v), -1) for v in _hand_views(x, c)])
        center, ten = probs[4], probs.mean(0)
        ens_c, ens_t = ens_c + center, ens_t + ten
        out[i] = center, ten
    out["ensemble"] = ens_c / len(ckpts), ens_t / len(ckpts)

    def err(p, k):
        return round(
            100 * float((~(p.topk(min(k, p.shape[1]), 1).indices == labels[:, None]).any(1)).float().mean()), 2
        )

    return {k: (err(c_, 1), err(t, 1), err(t, 5)) for k, (c_, t) in out.items()}


def _printed_rows(out: str) -> list[tuple[float, float, float]]:
    """(centre top-1, 10-crop top-1, 10-crop top-5) of every row of the printed table."""
    rows = []
    for line in out.splitlines():
        m = re.search(r"\|\s+([\d.]+)\s+([\d.]+) \|\s+([\d.]+)\s+([\d.]+) \|", line)
        if m:
            rows.append((float(m[1]), float(m[3]), float(m[4])))
    return rows


def test_eval_end_to_end_on_shapes_with_an_ensemble(tmp_path, data_dir, capsys):
    """Two checkpoints on 7 evenly spaced images of the generated shapes validation split: the printed rows
    (model 1, model 2, ensemble) equal the hand computation of the protocol, and eval.csv holds the same."""
    ckpts = [_checkpoint(tmp_path / f"r{s}" / "checkpoints" / "last.ckpt", 10, 64, s, STANDARD) for s in (0, 1)]
    cfg = _compose_eval(
        [f"ckpt=[{ckpts[0]},{tmp_path / 'r1'}]", "num_images=7", *TINY_DATA], tmp_path / "eval", data_dir
    )
    result = run_task(evaluate, cfg)
    printed = _printed_rows(capsys.readouterr().out)
    from zfnet_exp.data import ShapesDataModule

    dm = ShapesDataModule(cache_dir=str(data_dir), image_size=64, train_per_class=3, val_per_class=2)
    dm.prepare_data()
    _, val = dm.build_splits()
    picks = [round(i * 19 / 6) for i in range(7)]  # 7 of the 20, evenly spaced (0, 3, 6, 10, 13, 16, 19)
    hand = _hand_errors(ckpts, [val.samples[i] for i in picks], 73, 64)
    assert printed == [hand[0], hand[1], hand["ensemble"]]
    assert [r["images"] for r in result["rows"]] == [7, 7, 7] and result["rows"][2]["model"] == "ensemble of 2"
    csv_text = (tmp_path / "eval" / "eval.csv").read_text()
    assert f"{hand['ensemble'][1]}" in csv_text
    assert (tmp_path / "eval" / "diagnostics" / "eval" / "table2" / "step0000000.csv").is_file()


def test_eval_on_imagenet_fixture_with_the_mean_image(tmp_path, data_dir, capsys):
    """ImageNet devkit layout (flat val, meta.mat), one validation file truncated, and a checkpoint that subtracts
    a per-pixel mean image ("paper" scale): the printed errors equal the hand computation over the 7 readable
    files (the truncated one is left out, not replaced by a duplicate), which are also the per-class CSV's
    images; no paper row (4 classes, not ImageNet-1k)."""
    root = imagenet_root(tmp_path / "imagenet", val="devkit")
    write_truncated_jpeg(root / "val" / "ILSVRC2012_val_00000003.JPEG")
    mean_image = torch.rand(3, 73, 73, generator=torch.Generator().manual_seed(3))
    ckpt = _checkpoint(
        tmp_path / "run.ckpt", 4, 64, 5, {**STANDARD, "normalization": "paper", "mean": mean_image.tolist()}
    )
    overrides = [f"ckpt={ckpt}", "data=imagenet", f"data.root={root}", "data.num_classes=null", "data.num_workers=0"]
    run_task(evaluate, _compose_eval(overrides, tmp_path / "eval", data_dir))
    out = capsys.readouterr().out
    from zfnet_exp.data import ImageNetDataModule

    _, val = ImageNetDataModule(root=str(root)).build_splits()
    readable = [s for s in val.samples if not s[0].endswith("_00000003.JPEG")]
    assert _printed_rows(out) == [_hand_errors([ckpt], readable, 73, 64)[0]]
    assert "skipped    : 1 unreadable" in out and "| -" in out  # no paper row for a 4-class dataset
    per_class = (tmp_path / "eval" / "eval_per_class.csv").read_text()
    assert "kit fox" in per_class and "crane (n02012849)" in per_class  # human-readable names


def test_class_count_mismatch_and_bad_layout_exit_2(tmp_path, data_dir, capsys):
    """A 7-class checkpoint on the 10-class shapes data, and a missing ImageNet folder: exit code 2 with one
    message each (no traceback), the layout error before any model is loaded."""
    ckpt = _checkpoint(tmp_path / "c.ckpt", 7, 64, 0, STANDARD)
    with pytest.raises(SystemExit) as e:
        run_task(evaluate, _compose_eval([f"ckpt={ckpt}", *TINY_DATA], tmp_path / "e1", data_dir))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "predicts 7 classes but data=shapes has 10" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as e:
        run_task(
            evaluate,
            _compose_eval([f"ckpt={ckpt}", "data=imagenet", f"data.root={tmp_path}/none"], tmp_path / "e2", data_dir),
        )
    err = capsys.readouterr().err
    assert e.value.code == 2 and "does not exist" in err and "data.root=" in err
