"""Deconvnet callbacks (Figs. 2, 4, 6): a tiny 2-epoch run writes and logs the grids/JSON/curves; the
top-9 mined during validation equals ``mine_topk`` over the same val set, also under 2-process DDP; the
offline ``analyze.py analysis=top9|evolution`` reproduce the figures from a checkpoint."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from helpers import DIAG_LAYERS, TINY_DATA, compose_train, fresh_python, run_analysis, wandb_history

from zfnet_exp.callbacks.evolution import schedule
from zfnet_exp.callbacks.filter_health import FilterHealth
from zfnet_exp.callbacks.top9 import Top9Deconv
from zfnet_exp.data.normalize import NormalizedView

LAYERS = DIAG_LAYERS


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _reference_topk(run_dir: Path, layers, k=9):
    """mine_topk over the val set with the weights validated in the second epoch (its checkpoint)."""
    from zfnet_exp.diagnostics.topk import mine_topk
    from zfnet_exp.runs import build_dataset, load_model

    (ckpt,) = (run_dir / "checkpoints").glob("epoch001-*.ckpt")
    model, data = load_model(ckpt)
    return mine_topk(model.eval(), build_dataset(data, "val"), layers, k=k)


def _last_top9(run_dir: Path, layer: str) -> dict:
    files = sorted((run_dir / "diagnostics" / "diag" / layer / "top9").glob("step*.json"))
    assert len(files) == 2, files  # one per epoch, none for the sanity-check pass
    return _json(files[-1])


def _assert_equal_topk(payload: dict, ref) -> None:
    maps = payload["maps"]
    assert payload["indices"] == ref.indices[maps].tolist()
    assert payload["positions"] == ref.positions[maps].tolist()
    assert torch.allclose(torch.tensor(payload["values"]), ref.values[maps], rtol=1e-4, atol=1e-5)


def test_schedule_clips_and_keeps_last():
    assert schedule([1, 2, 5, 10, 64], 7) == [1, 2, 5, 7]
    assert schedule([1, 2], 2) == [1, 2]


def test_pick_maps_is_seeded_and_stable():
    """Properties, not a copy of the code: N distinct sorted channels, the same in a fresh interpreter (so a
    resumed run or another rank draws the same maps), different for layers of equal width, every channel equally
    likely over seeds (reference: scipy's chi-square test against the uniform), and the "all"/list/short forms."""
    from scipy.stats import chisquare

    from zfnet_exp.utils.tensors import pick_maps

    a = pick_maps(96, 8, 0, "conv1")
    assert a == sorted(set(a)) and len(a) == 8 and all(0 <= c < 96 for c in a)
    fresh = fresh_python("from zfnet_exp.utils.tensors import pick_maps; print(pick_maps(96, 8, 0, 'conv1'))")
    assert fresh == str(a)
    assert pick_maps(96, 8, 0, "conv2") != a and pick_maps(96, 8, 1, "conv1") != a
    counts = np.zeros(16)
    for seed in range(800):
        counts[pick_maps(16, 4, seed, "conv3")] += 1
    assert chisquare(counts).pvalue > 1e-3
    assert pick_maps(96, "all", 0) == list(range(96)) and pick_maps(4, 8, 0) == [0, 1, 2, 3]
    assert pick_maps(96, [5, 2], 0) == [5, 2]


def test_evolution_state_round_trips():
    from zfnet_exp.callbacks.evolution import FeatureEvolution

    a = FeatureEvolution(layers=["conv1"])
    a.logged_epochs, a.records = [1, 2], {"conv1": [{"epoch": 1}, {"epoch": 2}]}
    a.cells = {"conv1": [torch.rand(3, 3, 7, 7), torch.rand(3, 3, 7, 7)]}
    b = FeatureEvolution(layers=["conv1"])
    b.load_state_dict(a.state_dict())
    assert b.logged_epochs == [1, 2] and b.records == a.records
    assert torch.allclose(b.cells["conv1"][1], a.cells["conv1"][1], atol=1 / 255)


def test_capture_first_ignores_later_forwards():
    """Another callback re-running the model before batch end must not replace the batch's activations."""
    from zfnet_exp.callbacks._util import capture_first  # the callbacks' own helper, tested where it lives
    from zfnet_exp.models import create_model

    model = create_model("zfnet", num_classes=3, input_size=64).eval()
    x, y = torch.randn(2, 3, 64, 64), torch.randn(1, 3, 64, 64)
    with torch.no_grad(), capture_first(model, ["conv1"]) as acts:
        model(x)
        model(y)
        assert acts["conv1"].shape[0] == 2
        acts.clear()
        model(y)
        assert acts["conv1"].shape[0] == 1


def test_tiny_run_writes_and_logs_deconv_diagnostics(diag_run):
    run_dir = diag_run
    diag = run_dir / "diagnostics" / "diag"
    from PIL import Image

    for layer in LAYERS:  # one top-9 figure per layer and epoch, each a dashboard-sized image
        pngs = sorted((diag / layer / "top9").glob("step*.png"))
        assert len(pngs) == 2
        assert all(Image.open(p).size[0] <= 2100 for p in pngs), [Image.open(p).size for p in pngs]
        assert len(list((diag / layer / "evolution").glob("step*.png"))) == 2  # epochs 1 and 2 (= last)
        evo = _json(max((diag / layer / "evolution").glob("step*.json")))
        assert evo["epochs"] == [1, 2]
    assert len(list((diag / "filters" / "conv1").glob("step*.png"))) == 2
    # top-9 of the last epoch == an independent mine_topk over the same val set with the same weights
    ref = _reference_topk(run_dir, LAYERS)
    for layer in LAYERS:
        _assert_equal_topk(_last_top9(run_dir, layer), ref[layer])
    # health curves in metrics.csv
    with (run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert "health/conv1/dead_frac" in rows[0] and "health/conv1/aliasing" in rows[0]
    assert rows[-1]["health/conv5/dead_frac"] != ""
    # the W&B offline log holds the image keys
    logged = wandb_history(run_dir)
    for key in ("diag/conv1/top9", "diag/conv5/top9", "diag/conv1/evolution", "diag/filters/conv1"):
        assert logged.get(f"{key}._type") == "images/separated", key
    assert "health/conv1/dead_frac" in logged
    # the conv1 grid's caption carries the epoch's own health numbers (reference: the logged metrics)
    last = rows[-1]
    captions = logged["diag/filters/conv1.captions"]
    caption = (json.loads(captions) if isinstance(captions, str) else captions)[0]
    dead = round(float(last["health/conv1/dead_frac"]) * 96)
    assert f"aliasing {float(last['health/conv1/aliasing']):.3f}" in caption and f"dead {dead}/96" in caption


class _Validator(L.LightningModule):
    """Just a network to validate."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def validation_step(self, batch, batch_idx):
        self.model(batch[0])


@pytest.mark.slow
def test_ddp_two_processes_give_the_single_process_top9(tmp_path, data_dir):
    """2 CPU processes (ddp_fork, gloo: forked, so they start without importing torch and Lightning again), each
    validating half of the val set: the gathered top-9 equals a single-process mine_topk over the whole val set.
    ``trainer.validate`` with a bare module, so the test exercises the callbacks' collectives alone."""
    from hydra.utils import instantiate

    from zfnet_exp.diagnostics.topk import mine_topk
    from zfnet_exp.models import create_model

    cfg = compose_train([*TINY_DATA, "data.val_per_class=3"], tmp_path / "cfg", data_dir)
    dm = instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("validate")
    torch.manual_seed(0)
    model = create_model("zfnet", num_classes=len(dm.classes), input_size=64).eval()
    ref = mine_topk(model, NormalizedView(dm.val_set, dm.normalizer), LAYERS, k=9)
    run_dir = tmp_path / "ddp"
    health = FilterHealth(layers=LAYERS)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_fork",
        default_root_dir=str(run_dir),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Top9Deconv(layers=LAYERS, maps=3), health],
    )
    trainer.validate(_Validator(model), datamodule=dm)
    for layer in LAYERS:
        files = sorted((run_dir / "diagnostics" / "diag" / layer / "top9").glob("step*.json"))
        assert len(files) == 1, files
        payload = _json(files[0])
        _assert_equal_topk(payload, ref[layer])
        # rank 1 validates the odd indices (DistributedSampler, no shuffle): equality needs the gather
        assert {i % 2 for row in payload["indices"] for i in row} == {0, 1}
    assert list((run_dir / "diagnostics" / "diag" / "filters" / "conv1").glob("step*.png"))


def test_offline_top9_and_evolution_from_checkpoint(diag_run, tmp_path):
    """The offline analyses on the shared run's checkpoints: the same keys as the callbacks, the sanity
    cascade over the path to conv3, the evolution over both epoch checkpoints, and the W&B offline log."""
    for analysis, extra in (
        ("top9", ["analysis.sanity=true", "analysis.maps=2", "analysis.layers=[conv1,conv3]"]),
        ("evolution", ["analysis.maps=2", "analysis.layers=[conv2]", "analysis.num_images=8"]),
    ):
        run_analysis(diag_run, tmp_path / analysis, f"analysis={analysis}", *extra, logger="wandb")
    out = tmp_path
    diag = {p.relative_to(out).as_posix().split("/diagnostics/")[1] for p in out.rglob("diagnostics/**/*.*")}
    for key in ("diag/conv1/top9", "diag/conv3/top9", "diag/conv1/sanity", "diag/conv3/sanity", "diag/conv2/evolution"):
        assert f"{key}/step0000000.png" in diag and f"{key}/step0000000.json" in diag, key
    sanity = _json(next(out.rglob("diagnostics/diag/conv3/sanity/step0000000.json")))
    assert sanity["steps"][0] == {"step": "original", "score": 1.0} and len(sanity["steps"]) == 4  # conv3, 2, 1
    evo = _json(next(out.rglob("diagnostics/diag/conv2/evolution/step0000000.json")))
    assert evo["epochs"] == [1, 2]  # one column per epoch checkpoint of the run
    # the analysis also logged its figures to its own offline W&B run
    assert wandb_history(tmp_path / "top9")["diag/conv1/top9._type"] == "images/separated"
