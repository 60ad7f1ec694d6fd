"""What separate processes share, checked with separate processes: the skipped-file sets of DDP ranks (gathered
so that every rank logs, and rank 0 writes, the files skipped anywhere) and the image-statistics cache (several
processes starting at once compute the mean image once, under a file lock, and all read the same result).

References: the per-rank sets planted by hand (their union, counted by hand); the mean image computed with numpy
from the PNG files; a call log each process appends to, counting how many statistics passes ran."""

from __future__ import annotations

import csv
import multiprocessing
import os
import time
import traceback
from pathlib import Path

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import zfnet_exp.data.stats as stats
from zfnet_exp.callbacks.skipped_files import SkippedFilesMonitor


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 2)

    def training_step(self, batch, _):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _RankSkips(L.LightningDataModule):
    """Each rank met a different bad file, and both met one shared file (as each rank reads its own shards)."""

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        return DataLoader(TensorDataset(torch.randn(8, 4, generator=g), torch.arange(8) % 2), batch_size=2)

    @property
    def skipped_files(self) -> dict[str, str]:
        rank = self.trainer.global_rank
        return {f"/data/only-rank{rank}.jpg": f"truncated (rank {rank})", "/data/both.JPEG": "not an image"}


def test_skipped_files_are_gathered_over_ddp_ranks(tmp_path):
    """Two gloo processes (Lightning ddp_fork: forked, so they start without importing torch and Lightning again):
    data/skipped_files is the number of distinct files over both ranks (3, not 2 per rank), and skipped_files.txt
    lists all three once."""
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_fork",
        max_epochs=1,
        callbacks=[SkippedFilesMonitor()],
        logger=L.pytorch.loggers.CSVLogger(tmp_path, name="csv", version=0),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(_Tiny(), datamodule=_RankSkips())
    expected = {"/data/only-rank0.jpg", "/data/only-rank1.jpg", "/data/both.JPEG"}
    lines = (tmp_path / "skipped_files.txt").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in lines) == sorted(expected)
    with (tmp_path / "csv" / "version_0" / "metrics.csv").open() as f:
        logged = [float(r["data/skipped_files"]) for r in csv.DictReader(f) if r.get("data/skipped_files")]
    assert logged == [3.0]


def _stats_worker(root, cache, calls, ready, go, out) -> None:
    """One process of the statistics test (forked: a separate process that starts in milliseconds instead of
    importing torch and Lightning again): wait for the others, then ask for the statistics at once."""
    try:
        real = stats.image_statistics

        def counting(*args, **kwargs):
            with open(calls, "a") as f:
                f.write(f"{os.getpid()}\n")
            time.sleep(1.0)  # a long pass: a second process that did not wait would start its own meanwhile
            return real(*args, **kwargs)

        stats.image_statistics = counting  # in this process only
        files = sorted(str(p) for p in Path(root).rglob("*.png"))
        Path(ready).touch()
        while not Path(go).exists():
            time.sleep(0.005)
        torch.save(stats.cached_statistics(root, files, 16, cache, progress=False), out)
    except BaseException:
        Path(f"{out}.error").write_text(traceback.format_exc())
        raise


def test_statistics_cache_is_computed_once_across_processes(tmp_path):
    """Three processes (forked, each with its own pid and file handles) released at the same moment: one
    statistics pass in all, one cache file, no temporary file left, and every process returns the mean image numpy
    computes from the files."""
    root = tmp_path / "train" / "a"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8)
    for i, img in enumerate(pixels):
        Image.fromarray(img).save(root / f"{i}.png")
    cache, calls, go = tmp_path / "cache", tmp_path / "calls.txt", tmp_path / "go"
    fork = multiprocessing.get_context("fork")
    procs = []
    for i in range(3):
        args = [root.parent, cache, calls, tmp_path / f"ready{i}", go, tmp_path / f"out{i}.pt"]
        procs.append(fork.Process(target=_stats_worker, args=[str(a) for a in args]))
        procs[-1].start()
    try:
        deadline = time.time() + 240
        while not all((tmp_path / f"ready{i}").exists() for i in range(3)):
            assert time.time() < deadline and all(p.is_alive() for p in procs), [p.exitcode for p in procs]
            time.sleep(0.01)
        go.touch()
        for i, p in enumerate(procs):
            p.join(timeout=240)
            error = tmp_path / f"out{i}.pt.error"
            assert p.exitcode == 0, error.read_text()[-3000:] if error.exists() else p.exitcode
        assert len({p.pid for p in procs} | {os.getpid()}) == 4  # three processes besides this one
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    assert len(calls.read_text().splitlines()) == 1  # one pass; the other two waited on the lock and read it
    assert [p.suffix for p in (cache / "stats").iterdir() if p.suffix != ".lock"] == [".pt"]
    reference = torch.from_numpy(pixels.astype(np.float64).mean(0) / 255.0).permute(2, 0, 1).float()
    for i in range(3):
        got = torch.load(tmp_path / f"out{i}.pt", weights_only=True)
        assert got["images"] == 6
        torch.testing.assert_close(got["mean_image"], reference, atol=1e-6, rtol=0)
