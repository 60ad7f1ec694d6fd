"""Pixel statistics of a training split: the per-pixel mean image of the paper and per-channel mean/std.

Zeiler & Fergus (Sec. 3, after Krizhevsky et al.) subtract "the per-pixel mean (across all images)" of the
256x256 centre crops. :func:`image_statistics` makes one pass over the training images in exactly that geometry
(shorter side resized to ``size``, centre ``size`` x ``size``, uint8, so the statistics describe what the network
is fed), accumulating in float64, and returns the mean image plus the per-channel mean and std (the per-channel
mean is the mean image's spatial average). Unreadable files are left out of the sums and recorded in the
:class:`~zfnet_exp.data.folder.SkipLog` (never replaced by a neighbour: that would count one image twice).

:func:`cached_statistics` computes that once per (dataset, geometry, subset) and caches it as
``<cache_dir>/stats/<key>.pt``. Every process that needs it (DDP ranks on one or several nodes sharing the
cache, several sweep jobs on one dataset) goes through one file lock: the first computes and writes the file
atomically, the others wait on the lock and then read it, so the pass runs once and nobody reads a half-written
file. No process group is needed, which matters because the datamodule is set up before Lightning starts one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import Dataset

from ..utils.loaders import make_loader
from ..utils.progress import progress_bar
from ..utils.torch_files import load_torch_file
from .folder import SkipLog, UnreadableImage, read_rgb
from .transforms import center_uint8

STATS_VERSION = 2  # bump when the computation changes, so old cache files are not reused


class _StatsImages(Dataset):
    """``(uint8 [3,S,S], 1)`` per readable file, ``(zeros, 0)`` for an unreadable one (weight 0: left out)."""

    def __init__(self, files: Sequence[str], size: int, skip_log: SkipLog | None):
        self.files, self.size, self.skip_log = list(files), int(size), skip_log
        self.transform = center_uint8(self.size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        try:
            return self.transform(read_rgb(self.files[i], self.size)), 1
        except UnreadableImage as e:
            if self.skip_log is not None:  # the statistics read (a subset of) the training split
                count = self.skip_log.record(e.path, e.reason, "train", len(self.files))
                self.skip_log.warn(
                    count, "train", f"statistics: skipping unreadable image {e.path} ({e.reason})", rank_zero_warn
                )
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), 0


def subset(files: Sequence[str], max_images: int | None) -> list[str]:
    """At most ``max_images`` files, evenly spaced over the (class-sorted) list so every class contributes."""
    files = list(files)
    if max_images is None or len(files) <= max_images:
        return files
    picks = np.linspace(0, len(files) - 1, int(max_images)).round().astype(int)
    return [files[i] for i in np.unique(picks)]


def image_statistics(
    files: Sequence[str | Path],
    size: int,
    num_workers: int = 0,
    batch_size: int = 64,
    skip_log: SkipLog | None = None,
    progress: bool = True,
) -> dict:
    """``{"mean_image": float32 [3,S,S] in [0,1], "mean": [3], "std": [3], "images": n_used, "skipped": k}`` over
    ``files`` in the paper's centre geometry at side ``size``. Raises ``ValueError`` without readable images."""
    files = [str(f) for f in files]
    if not files:
        raise ValueError("no images to compute statistics from")
    loader = make_loader(_StatsImages(files, size, skip_log), batch_size, num_workers, pin_memory=False)
    total = torch.zeros(3, size, size, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    used = 0
    bar = progress_bar(total=len(files), desc=f"mean image ({size}x{size})", unit="img", enabled=progress)
    with bar:
        for x, weight in loader:
            keep = weight.bool()
            x = x[keep].to(torch.float64)
            total += x.sum(0)
            total_sq += (x**2).sum((0, 2, 3))
            used += int(keep.sum())
            bar.update(len(weight))
    if used == 0:
        raise ValueError(f"none of the {len(files)} images could be read")
    mean_image = total / used / 255.0
    mean = mean_image.mean((1, 2))
    var = total_sq / (used * size * size) / 255.0**2 - mean**2
    return {
        "mean_image": mean_image.to(torch.float32),
        "mean": [round(float(v), 6) for v in mean],
        "std": [round(float(v), 6) for v in var.clamp(min=1e-12).sqrt()],
        "images": used,
        "skipped": len(files) - used,
    }


def cache_key(root: str | Path, size: int, files: Sequence[str]) -> str:
    """Changes with the dataset folder, the geometry and the exact file list (a subset, added files)."""
    h = hashlib.sha1(f"v{STATS_VERSION}|{Path(root).resolve()}|{size}|{len(files)}".encode())
    for f in files:
        h.update(f.encode())
    return h.hexdigest()[:16]


def cached_statistics(
    root: str | Path,
    files: Sequence[str],
    size: int,
    cache_dir: str | Path | None,
    num_workers: int = 0,
    skip_log: SkipLog | None = None,
    progress: bool = True,
) -> dict:
    """:func:`image_statistics` computed once and shared through ``<cache_dir>/stats/<key>.pt`` (see the module
    docstring for the locking); ``cache_dir=None`` computes without caching."""
    files = [str(f) for f in files]
    if cache_dir is None:
        return image_statistics(files, size, num_workers=num_workers, skip_log=skip_log, progress=progress)
    path = Path(cache_dir).expanduser() / "stats" / f"{cache_key(root, size, files)}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        return load_torch_file(path, "the image-statistics cache this project writes")
    lock = FileLock(str(path) + ".lock")
    try:
        lock.acquire(timeout=0)
    except TimeoutError:  # filelock.Timeout subclasses TimeoutError
        rank_zero_info(f"Waiting for another process computing the image statistics ({path}) ...")
        lock.acquire()
    try:
        if path.is_file():  # computed by the process that held the lock
            return load_torch_file(path, "the image-statistics cache this project writes")
        rank_zero_info(f"Computing the training-set image statistics once ({len(files)} images); cached in {path}")
        stats = image_statistics(files, size, num_workers=num_workers, skip_log=skip_log, progress=progress)
        stats["root"] = str(root)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save(stats, tmp)
        os.replace(tmp, path)  # atomic: readers see the whole file or none
        return stats
    finally:
        lock.release()


def channel_stats(files: Sequence[str | Path], max_images: int = 2000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units over an evenly spaced subset of at most ``max_images`` files,
    in the geometry of the first image (for generated datasets whose images all have one size)."""
    files = subset([str(f) for f in files], max_images)
    if not files:
        raise ValueError("no images to compute channel statistics from")
    size = min(read_rgb(files[0]).size)
    stats = image_statistics(files, size, progress=False)
    return stats["mean"], stats["std"]
