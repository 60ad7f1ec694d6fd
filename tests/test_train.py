"""End-to-end training: 2-batch runs with every logger, what lands in the run folder and the W&B log, and
exact resume from a checkpoint.

The runs whose figures no test here reads leave out the figures that cost seconds (the top9, evolution,
occlusion and filter_health callbacks, the dissection's figures); each logger's run keeps what is cheap and
writes through it (the training-sample image, the dissection table). One ``logger=none`` run is shared by the
tests that only read it (that logger's checks, rebuilding the model from its checkpoint, and the first half of
the resume test). The Table 3 variants run every default diagnostic callback, each on every conv layer of the
variant."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from helpers import NO_FIGURE_CALLBACKS, TINY_DATA, compose_train, wandb_history

from zfnet_exp.models import list_models
from zfnet_exp.tasks.runner import run_task
from zfnet_exp.tasks.train import train

SMOKE = ["debug=smoke", *TINY_DATA]
# what the runs of the logger and resume tests leave out: the figure callbacks no test here reads and the
# dissection's figures (the cheap training-sample grid stays: each logger's image path; so does the dissection's
# table: each logger's table path), and the best-epoch copy of last.ckpt (a second 260 MB file per run; the tests
# read last.ckpt, the one-checkpoint-per-epoch path is the diag_run's)
LEAN = [
    *(c for c in NO_FIGURE_CALLBACKS if c != "~callbacks.train_samples"),
    "callbacks.model_checkpoint.save_top_k=0",
]
# the default callbacks, each on fewer units: 2 maps per layer, one occlusion probe on a coarser grid, the
# dissection's scalars and table without its per-layer figure (matplotlib, the same for any network: drawn in
# the session's diag_run)
CHEAP_DIAGNOSTICS = [
    "callbacks.top9.maps=2",
    "callbacks.evolution.maps=2",
    "callbacks.occlusion.num_probes=1",
    "callbacks.occlusion.stride=8",
    "callbacks.dissect.figures=false",
]


def _run(tmp_path, data_dir, *overrides, name="run"):
    run_dir = tmp_path / name
    cfg = compose_train([*SMOKE, *overrides], run_dir, data_dir)
    return run_dir, run_task(train, cfg)


def _metrics_rows(run_dir: Path) -> list[dict]:
    with (run_dir / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, data_dir):
    """One 2-batch, one-epoch run with ``logger=none`` (read-only for the tests that share it)."""
    return _run(tmp_path_factory.mktemp("plain"), data_dir, "logger=none", *LEAN)


def test_wandb_offline_log_holds_metrics_and_images(tmp_path, data_dir, wandb_home):
    run_dir, metrics = _run(tmp_path, data_dir, "logger=wandb", *LEAN)
    logged = wandb_history(run_dir)
    # the values in the W&B log are the ones the trainer computed
    assert logged["val/acc_top1"] == pytest.approx(metrics["val/acc_top1"], abs=1e-6)
    assert logged["val/err_top1"] == pytest.approx(1 - metrics["val/acc_top1"], abs=1e-6)
    assert "train/loss_step" in logged and "trainer/global_step" in logged
    # the image sink forwarded the training-sample grid as a W&B image, and wrote the same PNG in the run folder
    assert logged["data/train_samples._type"] == "images/separated"
    assert list((run_dir / "diagnostics" / "data" / "train_samples").glob("step*.png"))
    assert _metrics_rows(run_dir)[0]["epoch"] == "0"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    # the W&B run id is derived from the run folder (a restart in the same folder continues the same run)
    from zfnet_exp.utils.wandb_env import run_id_for

    assert list((run_dir / "wandb").glob(f"offline-run-*-{run_id_for(run_dir)}"))


@pytest.mark.parametrize("logger", ["tensorboard", "csv", "none"])
def test_two_batch_run_per_logger(logger, tmp_path, data_dir, request):
    if logger == "none":
        run_dir, metrics = request.getfixturevalue("plain_run")
    else:
        run_dir, metrics = _run(tmp_path, data_dir, f"logger={logger}", *LEAN)
    rows = _metrics_rows(run_dir)
    # "step" is Lightning's logging step (0-based), the same x-axis as in W&B and TensorBoard
    assert len(rows) == 1 and int(rows[0]["step"]) == 1
    assert float(rows[0]["val/acc_top1"]) == pytest.approx(metrics["val/acc_top1"], abs=1e-6)
    assert {
        "train/loss",
        "val/loss",
        "val/err_top1",
        "val/err_top5",
        "train/err_top1",
        "train/err_top5",
        "train/acc_top5",
        "val/acc_top5",
    } <= set(rows[0])
    assert float(rows[0]["train/err_top1"]) == pytest.approx(1 - float(rows[0]["train/acc_top1"]), abs=1e-5)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    if logger == "tensorboard":
        assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    if logger == "csv":
        assert (run_dir / "csv" / "metrics.csv").is_file()


def test_resume_continues_epoch_step_optimizer_and_schedule(plain_run, tmp_path, data_dir):
    first, _ = plain_run  # trainer.max_epochs=1 (debug=smoke)
    ckpt = torch.load(first / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 0 and ckpt["global_step"] == 2
    second, _ = _run(tmp_path, data_dir, "logger=none", *LEAN, "trainer.max_epochs=2", f"ckpt_path={first}",
                     name="second")  # fmt: skip
    resumed = torch.load(second / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["epoch"] == 1 and resumed["global_step"] == 4
    # the LR schedule continued from step 2 (not restarted) and Adam's step counters kept counting
    assert resumed["lr_schedulers"][0]["last_epoch"] == 4
    state = resumed["optimizer_states"][0]["state"]
    assert int(next(iter(state.values()))["step"]) == 4
    # only the new epoch is in the new run's metrics
    assert [r["epoch"] for r in _metrics_rows(second)] == ["1"]


def test_checkpoint_rebuilds_model_alone(plain_run):
    from zfnet_exp.models import LitClassifier

    run_dir, _ = plain_run
    path = run_dir / "checkpoints" / "last.ckpt"
    model = LitClassifier.load_from_checkpoint(path, map_location="cpu")
    assert model.hparams.name == "zfnet" and model.hparams.input_size == 64
    from zfnet_exp.data.datamodule import data_state

    # the datamodule's own state_dict (Lightning stores it in the checkpoint) carries what figures need
    data = data_state(torch.load(path, map_location="cpu", weights_only=True))
    assert data["image_size"] == 64 and len(data["classes"]) == 10 and len(data["mean"]) == 3


def test_missing_checkpoint_is_a_clear_error(tmp_path, data_dir):
    cfg = compose_train([*SMOKE, "logger=none", f"ckpt_path={tmp_path}/nope.ckpt"], tmp_path / "run", data_dir)
    with pytest.raises(SystemExit) as e:
        run_task(train, cfg)
    assert e.value.code == 2


@pytest.mark.parametrize("model", [m for m in list_models() if m != "zfnet"])
def test_table3_variants_train(model, tmp_path, data_dir):
    """Every registered variant trains through the same config path as the default model: its full-width network
    with every default diagnostic callback (fewer maps and probes than by default: each still runs on every conv
    layer of the variant, which is what can break when a variant drops or widens layers). Only ``last.ckpt`` is
    written (``save_top_k=0``), with the weights only (``save_weights_only``): the best-checkpoint copy and Adam's
    two moment tensors of a 145M-parameter variant are gigabytes nobody reads here."""
    run_dir, metrics = _run(
        tmp_path,
        data_dir,
        f"model={model}",
        "logger=none",
        "~callbacks.train_samples",
        "callbacks.model_checkpoint.save_top_k=0",
        "+callbacks.model_checkpoint.save_weights_only=true",
        *CHEAP_DIAGNOSTICS,
    )
    assert math.isfinite(metrics["train/loss_step"]) and math.isfinite(metrics["val/loss"])
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["name"] == model and ckpt["global_step"] == 2
    # the weights are the named variant's (reference: a fresh create_model of that name loads them strictly: every
    # key and shape must match; built on the meta device and given the checkpoint's tensors)
    from zfnet_exp.models import create_model

    with torch.device("meta"):
        ref = create_model(model, num_classes=10, input_size=64)
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    ref.load_state_dict(state, strict=True, assign=True)
