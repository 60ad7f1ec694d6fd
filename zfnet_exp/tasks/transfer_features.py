"""The feature mode (the paper's): features of layer ``k`` of the frozen pretrained network, extracted once per
(checkpoint, layer, grid, images) and cached on disk, and the linear classifiers (scikit-learn) trained on them.

Why a cache: the 5 splits and every N of a Fig. 9 sweep train classifiers on the same images' features; the
network runs once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import Dataset

from ..diagnostics.features import layer_features
from ..utils.loaders import make_loader
from ..utils.progress import progress_bar
from ..utils.torch_files import load_torch_file
from .transfer_source import TransferSource

FEATURE_CACHE_VERSION = 2  # bump when what a cache file holds changes, so older files are not read


def feature_cache_path(
    cache_dir: str | Path, checkpoint: Path, layer: int, grid: int, dataset, image_size: int
) -> Path:
    """One file per (checkpoint file version, layer, grid, image size, list of image files)."""
    stat = checkpoint.stat()
    files = hashlib.sha1("\n".join(p for p, _ in dataset.samples).encode()).hexdigest()
    key = json.dumps(
        [
            FEATURE_CACHE_VERSION,
            str(checkpoint.resolve()),
            stat.st_size,
            stat.st_mtime_ns,
            int(layer),
            int(grid),
            int(image_size),
            files,
        ]
    )
    return Path(cache_dir) / f"L{layer}_g{grid}_{image_size}px_{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"


def extract_features(
    model: nn.Module,
    dataset: Dataset,
    layer: int,
    normalize: Callable,
    device: torch.device,
    grid: int = 6,
    batch_size: int = 64,
    num_workers: int = 0,
    cache_path: Path | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, D]`` float32 features of every image of ``dataset`` (in dataset order) and ``readable [N]`` (bool):
    False where the file could not be read (the loader put the next image in its place; such rows must be
    left out, not labelled with the unreadable file's class). With ``cache_path``, a cached file is read
    instead of running the network, and a fresh extraction is written there (float16: half the disk, far below
    the precision a linear classifier needs) atomically."""
    if cache_path is not None and cache_path.is_file():
        print(f"Features: {cache_path} (cached)", flush=True)
        cached = load_torch_file(cache_path, "the feature cache transfer.py writes")
        return cached["features"].float(), cached["readable"]
    chunks, readable = [], []
    loader = make_loader(dataset, batch_size, num_workers)
    start = 0
    for x, _, index in progress_bar(loader, desc=f"features layer {layer}", unit="batch"):
        chunks.append(layer_features(model, normalize(x.to(device)), layer, grid).cpu())
        readable.append(index == torch.arange(start, start + len(index)))
        start += len(index)
    features, readable = torch.cat(chunks), torch.cat(readable)
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"features": features.half(), "readable": readable, "layer": layer, "grid": grid}, tmp)
        os.replace(tmp, cache_path)
    return features, readable


def source_features(
    cfg: DictConfig, source: TransferSource, dataset: Dataset, image_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, readable) of ``dataset`` at ``transfer.layer`` of the pretrained network, through the on-disk
    cache when ``transfer.cache_dir`` is set."""
    t = cfg.transfer
    cache = None
    if t.cache_dir:
        cache = feature_cache_path(t.cache_dir, source.checkpoint.path, int(t.layer), int(t.grid), dataset, image_size)
    return extract_features(
        source.model,
        dataset,
        int(t.layer),
        source.normalize,
        source.device,
        int(t.grid),
        int(cfg.batch_size),
        int(cfg.num_workers),
        cache,
    )


def make_classifier(kind: str, C: float, max_iter: int, seed: int):
    """scikit-learn's linear classifiers on standardized features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if kind == "svm":
        clf = LinearSVC(C=C, max_iter=max_iter, random_state=seed)
    else:
        clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    return make_pipeline(StandardScaler(), clf)
