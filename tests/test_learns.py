"""Training learns, and its units become detectors: the default ZFNet architecture under the default recipe (AdamW,
warm-up + cosine, zero head, balanced batches, gradient centralization, filter renormalization), seeded, on a small
``shapes`` split, ends far above chance on the validation split. Every other training test checks plumbing (files,
logs, resume); this one fails if a change leaves the network at chance (a dead-ReLU plateau, a broken label mapping,
a normalizer that feeds garbage, an optimizer that updates nothing). The same run (trained once for both tests)
carries the dissect callback, which is on by default: its last epoch must have many times the conv5 detectors of the
run's own initial weights (issue 20: "the trained default run has many times the conv5 detectors of the same network
at initialization"; NetDissect saw about 10x on ImageNet AlexNet conv5, 97 vs 9).

Reference: chance on 10 balanced classes, 10%. With 100 validation images a top-1 of 25% or more has a probability
of about 1e-5 under chance (binomial tail), so the bar is far above chance (the seeded run reaches 34%: 2026-12-07,
fused AdamW, conv1 weight decay 10).
To fit the suite's time budget the run is small and short (120 optimizer steps of 30 images at 64 px instead of the
default run's ~1,600), so it takes the learning rate 1e-3 instead of 3e-4 and the split's easier end (no pixel noise
or blur, objects of radius 0.30-0.40): the default settings need ~200 steps to leave the initial plateau (README
"Default recipe")."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from helpers import NO_FIGURE_CALLBACKS, compose_train

from zfnet_exp.tasks.runner import run_task
from zfnet_exp.tasks.train import train

CHANCE = 0.1
SHORT_RUN = [
    "trainer=cpu",
    "seed=0",
    "data.image_size=64",
    "data.train_per_class=30",
    "data.val_per_class=10",
    "data.batch_size=30",
    "data.num_workers=0",
    "data.pixel_noise=0",
    "data.blur_probability=0",
    "data.min_radius=0.3",
    "data.max_radius=0.4",
    "model.optimizer.lr=1e-3",
    "trainer.max_epochs=12",
    "logger=csv",
    # the diagnostics and checkpoints play no part in learning
    *NO_FIGURE_CALLBACKS,
    "~callbacks.model_checkpoint",
    "+trainer.enable_checkpointing=false",  # nor Lightning's default one (260 MB per epoch)
    "callbacks.dissect.every_n_epochs=12",  # initial weights and the last epoch: what the test reads
]


# measured on the 2-core VM (2026-12-07, seed 0, conv1 weight decay 10, fused AdamW; seeded, so it repeats on one
# platform): 44 conv5 detectors at init (the run's own at_init table: 44), 108 after the 12 epochs (2.5x; 110 with
# PyTorch's for-loop AdamW, 135 with the previous conv1 weight decay 5). The bound leaves room below the measured
# 2.5x for other platforms' round-off (the
# default run: 31 at init, 103 trained, 3.3x; README "Network Dissection").
MIN_DETECTOR_RATIO = 2.0
# the run's at_init dissection forwards the subset in batches of 50, the reference through the validation loader in
# batches of 30: float round-off may move a unit across its threshold, nothing more
INIT_TOLERANCE = 2


@pytest.fixture(scope="module")
def learned(tmp_path_factory, data_dir) -> tuple[Path, dict, object]:
    """The short run (trained once): its folder, final metrics and composed config."""
    run_dir = tmp_path_factory.mktemp("learns") / "run"
    cfg = compose_train(SHORT_RUN, run_dir, data_dir)
    return run_dir, run_task(train, cfg), cfg


@pytest.mark.slow
def test_default_architecture_learns_far_above_chance(learned):
    _, metrics, cfg = learned
    assert cfg.model.arch.conv1.out_channels == 96 and cfg.model.arch.fc6.units == 4096  # the default network
    assert metrics["val/acc_top1"] >= 2.5 * CHANCE, metrics
    assert metrics["train/acc_top1"] >= 3.5 * CHANCE, metrics


@pytest.mark.slow
def test_trained_network_has_many_times_the_conv5_detectors_of_its_init(learned):
    """Reference: the run's initial weights (rebuilt under the run's seed, as train.py builds them), dissected by
    the same callback through ``Trainer.validate`` on the same validation images."""
    import lightning as L
    from hydra.utils import instantiate

    from zfnet_exp.callbacks.dissect import Dissect

    run_dir, _, cfg = learned
    L.seed_everything(int(cfg.seed), workers=True)
    dm = instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)  # as train.py: the run's initial weights
    model = instantiate(cfg.model, num_classes=dm.num_classes)
    cb = Dissect()
    trainer = L.Trainer(callbacks=[cb], logger=False, enable_checkpointing=False, accelerator="cpu",
                        default_root_dir=str(run_dir.parent / "init"), enable_progress_bar=False)  # fmt: skip
    trainer.validate(model, datamodule=dm, verbose=False)
    init = cb.last_result["conv5"]
    with (run_dir / "metrics.csv").open() as f:
        last = [r for r in csv.DictReader(f) if r.get("dissect/conv5/detectors")][-1]
    trained = float(last["dissect/conv5/detectors"])
    # the run's own dissection of its initial weights (the callback's at_init, step 0) is that reference's
    with (run_dir / "diagnostics" / "dissect" / "units" / "step0000000.csv").open() as f:
        at_init = sum(r["detector"] == "True" for r in csv.DictReader(f) if r["layer"] == "conv5")
    print(f"conv5 detectors: init {init.detectors} (the run's at_init: {at_init}), trained {trained}")
    assert abs(at_init - init.detectors) <= INIT_TOLERANCE, (at_init, init.detectors)
    assert trained >= MIN_DETECTOR_RATIO * max(init.detectors, 1), (init.detectors, trained)
