"""DDP with every diagnostic on: the training sampler's split over ranks, and a 2-process CPU DDP run (trainer=ddp_cpu,
gloo) with all callbacks that writes and logs once (rank 0) and mines the same top-9 as one process does. The run
takes the launcher of ``trainer=ddp`` on GPUs: Lightning re-runs ``python train.py ...`` for rank 1, into the run
folder whose lock rank 0 holds (rank 1 is the same run, not a second one to refuse).

References: brute-force counting of the sampler's indices; the single-process ``mine_topk`` over the whole
validation set with the checkpoint's weights; the offline W&B log read back with ``wandb leet inspect``."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from helpers import TINY_DATA, wandb_history

from zfnet_exp.data.sampling import ClassBalancedSampler, ShuffleSampler

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("balanced", [True, False])
def test_sampler_splits_each_global_batch_over_ranks(balanced):
    """On 2 and 4 ranks every rank gets the same number of batches, and rank r's b-th batch is the r-th slice of
    the single-process b-th global batch (so DDP trains on the same global batches as one process). Balanced:
    every rank's share holds each class equally often when batch/world is a multiple of the class count."""
    targets = [c for c in range(5) for _ in range(7 + c)]  # unequal class sizes
    batch = 20

    def make(world, rank, epoch=2, **kw):
        cls = ClassBalancedSampler if balanced else ShuffleSampler
        arg = targets if balanced else len(targets)
        return cls(arg, batch_size=batch, seed=3, epoch=epoch, num_replicas=world, rank=rank, **kw)

    single = list(make(1, 0))
    global_batches = [single[i : i + batch] for i in range(0, len(single), batch)]
    assert len(single) == len(make(1, 0)) and len(single) % batch == 0
    for world in (2, 4):
        per = batch // world
        shares = [list(make(world, r)) for r in range(world)]
        assert {len(s) for s in shares} == {len(single) // world} == {len(make(world, r)) for r in range(world)}
        for b, gb in enumerate(global_batches):
            for r in range(world):
                assert shares[r][b * per : (b + 1) * per] == gb[r * per : (r + 1) * per]
        if balanced and per % 5 == 0:
            for s in shares:
                for b in range(0, len(s), per):
                    assert set(Counter(targets[i] for i in s[b : b + per]).values()) == {per // 5}
    # another epoch is another order; the same epoch is the same order; a mid-epoch resume continues it
    assert list(make(1, 0, epoch=3)) != single and list(make(1, 0)) == single
    assert sorted(make(1, 0, epoch=3)) != list(make(1, 0, epoch=3))  # shuffled, not in dataset order
    assert list(make(2, 1, skip_batches=1)) == list(make(2, 1))[batch // 2 :]


def test_two_process_ddp_with_every_callback(tmp_path, data_dir, wandb_home):
    """trainer=ddp_cpu with the default callbacks (top-9, evolution, filter health, occlusion, samples, dissection;
    fewer maps, probes and images than by default) and W&B: no collective mismatch, one W&B run and one metrics row
    (rank 0 logs), epoch metrics synced over the ranks, and the top-9 mined on two validation shards equals one
    process mining the whole set with the same weights."""
    from zfnet_exp.diagnostics.topk import mine_topk
    from zfnet_exp.runs import build_dataset, load_model

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    args = [
        sys.executable,
        "train.py",
        "trainer=ddp_cpu",
        "debug=smoke",
        *TINY_DATA,
        "data.batch_size=10",
        "model.arch.fc6.units=64",
        "model.arch.fc7.units=64",
        "logger=wandb",
        # every callback on, each on a smaller workload (their collectives are the same; ~10% of the run's CPU)
        "callbacks.top9.maps=2",
        "callbacks.evolution.maps=2",
        "callbacks.occlusion.num_probes=2",
        "callbacks.occlusion.stride=8",
        "callbacks.dissect.num_images=10",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    r = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    run_dir = tmp_path / "run"
    assert (run_dir / "train_ddp_process_1.log").is_file()  # rank 1 was the command re-run by Lightning
    with (run_dir / "metrics.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["val/err_top1"]) == pytest.approx(1 - float(row["val/acc_top1"]), abs=1e-5)
    assert r.stdout.count("epoch 1/1 done") == 1  # plain progress line from rank 0 only
    logged = wandb_history(run_dir)  # asserts exactly one W&B run folder
    assert logged["val/acc_top1"] == pytest.approx(float(row["val/acc_top1"]), abs=1e-6)

    model, data = load_model(run_dir / "checkpoints" / "last.ckpt")
    val = build_dataset(data, "val")
    layers = ["conv1", "conv5"]
    ref = mine_topk(model.eval(), val, layers, k=9)
    for layer in layers:
        files = sorted((run_dir / "diagnostics" / "diag" / layer / "top9").glob("step*.json"))
        assert len(files) == 1, files  # written once, by rank 0
        payload = json.loads(files[-1].read_text())
        maps = payload["maps"]
        assert payload["indices"] == ref[layer].indices[maps].tolist()
        assert torch.allclose(torch.tensor(payload["values"]), ref[layer].values[maps], rtol=1e-4, atol=1e-5)
        assert f"diag/{layer}/top9._type" in logged
