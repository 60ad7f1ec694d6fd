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
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import Dataset, Subset
from torchvision import transforms as T

from ..data.datamodule import data_state
from ..data.folder import IndexedImageFolder
from ..data.normalize import Normalizer
from ..data.transforms import eval_transform
from ..errors import UserError
from ..models import LitClassifier
from ..schemas import check_layer_names, validate_config
from ..utils.checkpoints import resolve_checkpoint
from ..utils.instantiators import instantiate_group
from ..utils.skips import forget_skips
from ..viz import ImageSink
from .runner import finish_wandb


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


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The network (eval mode) and the data description the datamodule saved in the checkpoint
    (``datamodule.state_dict()``: normalization record, image_size, classes, root). The file is read once."""
    path = resolve_checkpoint(path)
    raw = torch.load(path, map_location="cpu", weights_only=False)
    lit = LitClassifier(**raw["hyper_parameters"])
    lit.load_state_dict(raw["state_dict"])
    return lit.model.eval().to(device), data_state(raw)


def build_dataset(data: dict[str, Any], images: str, num_images: int | None = None) -> Dataset:
    """``images``: a split of the checkpoint's dataset (``train`` / ``val``) or a folder in ImageFolder
    layout; at most ``num_images`` of them, evenly spaced so every class is represented."""
    if not data.get("mean"):
        raise UserError(
            "This checkpoint records no data normalization (it was not saved by LitClassifier "
            "during training); analyses need it to feed images the way training did."
        )
    # items as the network saw them: uint8 eval crop, then the training run's normalization
    transform = T.Compose([eval_transform(int(data["image_size"])), Normalizer.from_record(data)])
    if images in ("train", "val"):
        if not data.get("root"):
            raise UserError(
                f"images={images}: the checkpoint does not record its dataset folder; pass "
                f"images=<folder in ImageFolder layout> instead."
            )
        folder = Path(data["root"]) / images
    else:
        folder = Path(images).expanduser()
    dataset: Dataset = IndexedImageFolder(folder, transform=transform)
    trained = data.get("classes")
    if trained and len(dataset.classes) != len(trained):
        raise UserError(
            f"images={images}: {folder} has {len(dataset.classes)} class folders, but the checkpoint's model was "
            f"trained on {len(trained)} classes; its outputs would not line up with this folder's labels. Pass a "
            f"folder with the same class sub-folders as training (or images=val / images=train)."
        )
    if num_images is not None and num_images < len(dataset):
        picks = torch.linspace(0, len(dataset) - 1, int(num_images)).round().long().unique().tolist()
        dataset = Subset(dataset, picks)
    return dataset


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def analyze(cfg: DictConfig) -> dict[str, Any]:
    validate_config(cfg)
    forget_skips()  # "skipped layers" lines: once per analysis run
    run = instantiate(cfg.analysis, _convert_="all")  # the analysis function with its options bound
    name = cfg.analysis._target_.rsplit(".", 2)[-2]  # the analysis module
    device = _device(cfg.device)
    torch.manual_seed(cfg.seed)
    out_dir = Path(cfg.paths.output_dir)
    ckpt = resolve_checkpoint(cfg.ckpt) if cfg.get("ckpt") else None
    model, data, dataset = None, {}, None
    if ckpt is not None:
        model, data = load_checkpoint(ckpt, device)
        check_layer_names(cfg, model)
        if cfg.get("images"):
            dataset = build_dataset(data, str(cfg.images), cfg.get("num_images"))
    loggers = instantiate_group(cfg.get("logger"), "logger")
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
    print(f"Analysis {name}: {ckpt or '(no checkpoint)'} -> {out_dir / 'diagnostics'}", flush=True)
    status = "failed"
    try:
        if loggers:
            hparams = OmegaConf.to_container(cfg, resolve=True)
            hparams.pop("hydra", None)
            for lg in loggers:
                lg.log_hyperparams({**hparams, "checkpoint": str(ckpt)})
        result = run(ctx) or {}
        status = "success"
    finally:  # close the logger's run either way, so what was logged so far is flushed, not lost
        for lg in loggers:
            lg.finalize(status)
        finish_wandb()
    print(f"Done: results in {out_dir}", flush=True)
    return result
