"""Deconvnet callbacks (Figs. 2, 4, 6): a tiny 2-epoch run writes and logs the grids/JSON/curves; the
top-9 mined during validation equals ``mine_topk`` over the same val set, also under 2-process DDP; the
offline ``analyze.py analysis=top9|evolution`` reproduce the figures from a checkpoint."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY_DATA, compose_train
from zfnet_exp.callbacks.evolution import FeatureEvolution, schedule
from zfnet_exp.callbacks.filter_health import FilterHealth
from zfnet_exp.callbacks.top9 import Top9Deconv
from zfnet_exp.tasks.runner import run_task
from zfnet_exp.tasks.train import train

LAYERS = ["conv1", "conv2", "conv5"]
RUN = ["debug=smoke", *TINY_DATA, "trainer.max_epochs=2", "trainer.limit_val_batches=1.0", "trainer.num_sanity_val_steps=1", "callbacks=[model_checkpoint,top9,evolution,filter_health]",
       "callbacks.model_checkpoint.save_top_k=-1",  # one checkpoint per epoch: the reference weights
       f"callbacks.top9.layers=[{','.join(LAYERS)}]", "callbacks.top9.maps=3",
       f"callbacks.evolution.layers=[{','.join(LAYERS)}]", "callbacks.evolution.maps=3",
       "callbacks.evolution.num_images=16"]


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _reference_topk(run_dir: Path, layers, k=9):
    """mine_topk over the val set with the weights validated in the second epoch (its checkpoint)."""
    from zfnet_exp.diagnostics.topk import mine_topk
    from zfnet_exp.tasks.analyze import build_dataset, load_checkpoint

    (ckpt,) = (run_dir / "checkpoints").glob("epoch001-*.ckpt")
    model, data = load_checkpoint(ckpt)
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


@pytest.mark.slow
def test_tiny_run_writes_and_logs_deconv_diagnostics(tmp_path, data_dir, wandb_home):
    run_dir = tmp_path / "run"
    cfg = compose_train([*RUN, "logger=wandb"], run_dir, data_dir)
    run_task(train, cfg)
    diag = run_dir / "diagnostics" / "diag"
    for layer in LAYERS:
        assert len(list((diag / layer / "top9").glob("step*.png"))) == 2
        assert len(list((diag / layer / "evolution").glob("step*.png"))) == 2  # epochs 1 and 2 (= last)
        evo = _json(sorted((diag / layer / "evolution").glob("step*.json"))[-1])
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
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    out = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(runs[0])],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    logged = {}
    for line in out.splitlines():
        if line.strip():
            r = json.loads(line)
            if r.get("type") == "history":
                logged.update(r["history"]["item"])
    for key in ("diag/conv1/top9", "diag/conv5/top9", "diag/conv1/evolution", "diag/filters/conv1"):
        assert logged.get(f"{key}._type") == "images/separated", key
    assert "health/conv1/dead_frac" in logged
