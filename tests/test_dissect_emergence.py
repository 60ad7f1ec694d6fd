"""Detectors emerge with training: a small seeded run of the default network and recipe (fewer images and epochs
than ``python train.py``) ends with more than 1.5x the conv5 detectors its own initial weights have.

Reference: the same network at initialization (the run's seed, so the very weights training started from),
dissected by the same callback through ``Trainer.validate`` on the same 200 validation images. NetDissect saw
about 10x on ImageNet AlexNet conv5 (97 vs 9). Run as a script to print the numbers:
``PYTHONPATH=. python tests/test_dissect_emergence.py <out folder>``.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
from helpers import compose_train

RUN = [
    "data.train_per_class=100",
    "data.val_per_class=20",  # 200 validation images: the callback's whole default subset
    "data.num_workers=0",
    "trainer.max_epochs=8",
    "callbacks=[dissect]",
    "logger=csv",
]
# measured once on the 2-core VM (2026-12-06, seed 42; the run is seeded, so it repeats on one platform): after 8
# epochs (264 steps, val top-1 24%, still leaving the plateau) conv5 has 35 detectors against 16 at init (2.2x;
# object + part detectors 20 vs 4 after the first epoch); conv4 68 vs 31. The default 12-epoch run (~97%) is the
# real claim (NetDissect: ~10x); this short run supports only a modest bound.
MIN_RATIO = 1.5


def measure(run_dir: Path, data_dir: Path) -> dict[str, dict[str, float]]:
    """Train the run and dissect its initial weights; per layer {"init": detectors, "trained": detectors}."""
    import lightning as L
    from hydra.utils import instantiate

    import zfnet_exp.schemas  # noqa: F401  (as conftest: the schemas and resolvers train.py registers)
    import zfnet_exp.utils.resolvers  # noqa: F401
    from zfnet_exp.callbacks.dissect import Dissect
    from zfnet_exp.tasks.runner import run_task
    from zfnet_exp.tasks.train import train

    cfg = compose_train(RUN, run_dir / "init", data_dir)
    L.seed_everything(int(cfg.seed), workers=True)
    dm = instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)  # as train.py: the run's initial weights
    model = instantiate(cfg.model, num_classes=dm.num_classes)
    cb = Dissect()
    trainer = L.Trainer(callbacks=[cb], logger=False, enable_checkpointing=False, accelerator="cpu",
                        default_root_dir=str(run_dir / "init"), enable_progress_bar=False)  # fmt: skip
    trainer.validate(model, datamodule=dm, verbose=False)
    init = cb.last_result
    run_task(train, compose_train(RUN, run_dir / "trained", data_dir))
    with (run_dir / "trained" / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("dissect/conv5/detectors")]
    last = rows[-1]
    return {
        layer: {
            "init": float(init[layer].detectors),
            "trained": float(last[f"dissect/{layer}/detectors"]),
            "trained_unique": float(last[f"dissect/{layer}/unique_concepts"]),
            "init_unique": float(init[layer].unique_concepts),
            "val_acc": float(last.get("val/acc_top1") or "nan"),
        }
        for layer in init
    }


@pytest.mark.slow
def test_trained_network_has_many_times_the_conv5_detectors_of_its_init(tmp_path, data_dir, wandb_home):
    counts = measure(tmp_path, data_dir)
    c5 = counts["conv5"]
    assert c5["trained"] >= MIN_RATIO * max(c5["init"], 1), counts


if __name__ == "__main__":
    out = Path(sys.argv[1])
    for layer, c in measure(out, out / "data").items():
        print(layer, c, flush=True)
