"""The occlusion callback in a tiny real run: Fig. 7 PNG + JSON in the run folder and in the W&B log, the
probes fixed and seeded, skipped on other ranks, and the model's mode restored."""

from __future__ import annotations

import json

import numpy as np
import torch
from helpers import TINY_DATA, compose_train, fresh_python, wandb_history

from zfnet_exp.callbacks.occlusion import OcclusionSensitivity
from zfnet_exp.tasks.runner import run_task
from zfnet_exp.tasks.train import train
from zfnet_exp.utils.tensors import seeded_subset

SMOKE = ["debug=smoke", *TINY_DATA]
FAST = [
    "callbacks=[model_checkpoint,occlusion]",
    "callbacks.occlusion.num_probes=2",
    "callbacks.occlusion.every_n_epochs=1",
    "callbacks.occlusion.patch=32",
    "callbacks.occlusion.stride=16",
]


def test_probe_indices_are_seeded_and_distinct():
    """Properties, not a copy of the code: k distinct sorted indices, the same in a fresh interpreter (the probes
    of every epoch, rank and resumed run are the same images), another seed another draw, every index equally
    likely over seeds (reference: scipy's chi-square test against the uniform), the global RNG untouched."""
    from scipy.stats import chisquare

    state = torch.get_rng_state()
    a = seeded_subset(20, 4, seed=3)
    assert torch.equal(state, torch.get_rng_state())
    assert a == sorted(set(a)) and len(a) == 4 and all(0 <= i < 20 for i in a)
    fresh = fresh_python("from zfnet_exp.utils.tensors import seeded_subset; print(seeded_subset(20, 4, 3))")
    assert fresh == str(a) and seeded_subset(20, 4, seed=4) != a
    counts = np.zeros(20)
    for seed in range(1000):
        counts[seeded_subset(20, 4, seed)] += 1
    assert chisquare(counts).pvalue > 1e-3
    assert seeded_subset(3, 10, seed=0) == [0, 1, 2]


def test_callback_writes_figure_json_and_wandb(tmp_path, data_dir, wandb_home):
    run_dir = tmp_path / "run"
    cfg = compose_train([*SMOKE, *FAST, "logger=wandb"], run_dir, data_dir)
    run_task(train, cfg)
    root = run_dir / "diagnostics" / "diag" / "occlusion"
    probes = sorted(p.name for p in root.iterdir())
    assert len(probes) == 2
    for p in probes:
        pngs, jsons = list((root / p).glob("step*.png")), list((root / p).glob("step*.json"))
        assert len(pngs) == 1 and len(jsons) == 1
        payload = json.loads(jsons[0].read_text())
        # 64 px, patch 32, stride 16 -> 3x3 occluder positions
        assert torch.tensor(payload["prob"]).shape == (3, 3)
        assert torch.tensor(payload["top_class"]).shape == (3, 3)
        assert payload["layer"] == "conv5" and payload["index"] == int(p)
    logged = wandb_history(run_dir)
    assert any(k.startswith("diag/occlusion/") for k in logged), sorted(logged)


class _Untouchable:
    """A datamodule that fails the test if the callback reads anything from it."""

    def __getattr__(self, name):
        raise AssertionError(f"the callback read datamodule.{name}")


class _Stub:
    """Just enough of a Trainer for the scheduling logic (1-based epoch = current_epoch + 1, 10 epochs)."""

    def __init__(self, epoch, zero=True, sanity=False, fn="fit"):
        from types import SimpleNamespace

        self.current_epoch, self.max_epochs, self.is_global_zero, self.sanity_checking = epoch, 10, zero, sanity
        self.state = SimpleNamespace(fn=fn)
        self.datamodule = _Untouchable()


def test_schedule_and_rank_gating():
    """Runs exactly on 1-based epochs 2, 4, ..., 10 (reference: the list written out by hand), never in the
    sanity check, never on rank != 0, and does reach the datamodule when due on rank 0 (the gate is live)."""
    cb = OcclusionSensitivity(every_n_epochs=2)
    ran = []
    for epoch in range(10):
        try:
            cb.on_validation_epoch_end(_Stub(epoch), None)
        except AssertionError:
            ran.append(epoch + 1)
    assert ran == [2, 4, 6, 8, 10]
    cb.on_validation_epoch_end(_Stub(1, zero=False), None)  # due, but rank != 0: touches nothing
    cb.on_validation_epoch_end(_Stub(1, sanity=True), None)
    cb.on_validation_epoch_end(_Stub(1, fn="predict"), None)
    OcclusionSensitivity(every_n_epochs=0).on_validation_epoch_end(_Stub(9), None)


def test_model_mode_restored(tmp_path):
    from types import SimpleNamespace

    from zfnet_exp.data.folder import IndexedImageFolder  # noqa: F401  (type only)
    from zfnet_exp.models import create_model

    model = create_model("zfnet", num_classes=3, input_size=64).train()
    val = [(torch.randn(3, 64, 64), 1, 7)]
    dm = SimpleNamespace(val_set=val, classes=["a", "b", "c"])
    trainer = SimpleNamespace(
        current_epoch=0,
        max_epochs=1,
        is_global_zero=True,
        sanity_checking=False,
        datamodule=dm,
        default_root_dir=str(tmp_path),
        loggers=[],
        global_step=5,
        state=SimpleNamespace(fn="fit"),
    )
    cb = OcclusionSensitivity(every_n_epochs=1, num_probes=1, patch=32, stride=32)
    with torch.inference_mode():
        cb.on_validation_epoch_end(trainer, SimpleNamespace(model=model))
    assert all(m.training for m in model.modules())
    assert (tmp_path / "diagnostics" / "diag" / "occlusion" / "000007" / "step0000005.png").is_file()
