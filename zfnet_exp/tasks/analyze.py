"""Offline analyses of a trained checkpoint: ``python analyze.py ckpt=<file or run folder> analysis=<name>``.

Each analysis is a function ``zfnet_exp.tasks.analyses.<name>.run(ctx: AnalysisContext, **options) -> dict``
with typed keyword options, and a config ``conf/analysis/<name>.yaml`` that names it (``_target_``,
``_partial_: true``) and sets the options (checked by :mod:`zfnet_exp.schemas.analysis` at start). This task
instantiates it and calls it with the context; it only does what every analysis needs: load the model from
the checkpoint alone, rebuild the dataset the way training fed it
(normalization, crop size), pick the images, and give a place to write (``<run folder>/diagnostics`` through
the same image sink the training callbacks use).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import Dataset

from ..runs import build_dataset, read_checkpoint
from ..schemas import check_layer_names, validate_config
from ..utils.devices import torch_device
from ..utils.skips import forget_skips
from ..viz import ImageSink
from .offline import task_loggers


@dataclass
class AnalysisContext:
    """What every analysis is called with (its own options come as keyword arguments)."""

    model: nn.Module  # eval mode, on ``device``
    checkpoint: Path
    data: dict[str, Any]  # normalization (mean, std, normalization), image_size, classes, root
    dataset: Dataset | None  # items (image, label, dataset index), normalized like training's validation
    out_dir: Path  # the run folder
    sink: ImageSink  # writes <out_dir>/diagnostics/<key>/step<step>.png|json
    device: torch.device
    batch_size: int = 64  # the task's batch_size, num_workers and seed (conf/analyze.yaml)
    num_workers: int = 0
    seed: int = 0


def analyze(cfg: DictConfig) -> dict[str, Any]:
    validate_config(cfg)
    forget_skips()  # "skipped layers" lines: once per analysis run
    run = instantiate(cfg.analysis, _convert_="all")  # the analysis function with its options bound
    name = cfg.analysis._target_.rsplit(".", 2)[-2]  # the analysis module
    device = torch_device(cfg.device)
    torch.manual_seed(cfg.seed)
    out_dir = Path(cfg.paths.output_dir)
    checkpoint = read_checkpoint(cfg.ckpt) if cfg.get("ckpt") else None
    ckpt = checkpoint.path if checkpoint else None
    model, data, dataset = None, {}, None
    if checkpoint is not None:
        model, data = checkpoint.model(device), checkpoint.data
        check_layer_names(cfg, model)
        if cfg.get("images"):
            dataset = build_dataset(data, str(cfg.images), cfg.get("num_images"))
    print(f"Analysis {name}: {ckpt or '(no checkpoint)'} -> {out_dir / 'diagnostics'}", flush=True)
    with task_loggers(cfg, checkpoint=str(ckpt)) as loggers:
        ctx = AnalysisContext(
            model=model,
            checkpoint=ckpt,
            data=data,
            dataset=dataset,
            out_dir=out_dir,
            sink=ImageSink(out_dir, loggers),
            device=device,
            batch_size=cfg.batch_size,
            num_workers=cfg.num_workers,
            seed=cfg.seed,
        )
        result = run(ctx) or {}
    print(f"Done: results in {out_dir}", flush=True)
    return result
