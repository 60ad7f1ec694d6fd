"""The top-level keys of ``train.yaml`` / ``analyze.yaml`` and the ``paths`` group."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from .base import FieldError, at_least


@dataclass
class Paths:
    root_dir: str = "."
    data_dir: str = MISSING
    output_root: str = MISSING
    output_dir: str = MISSING


@dataclass
class TrainTop:
    task_name: str = "train"
    run_name: str | None = None
    tags: list[str] = field(default_factory=list)
    seed: int | None = None
    ckpt_path: str | None = None
    optimized_metric: str | None = None  # returned by train.py's main for Hydra sweepers


@dataclass
class AnalyzeTop:
    task_name: str = "analyze"
    run_name: str | None = None
    tags: list[str] = field(default_factory=list)
    ckpt: str = MISSING
    images: str | None = "val"
    num_images: int | None = None
    batch_size: int = 64
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        at_least(self, "num_images", 1)
        at_least(self, "batch_size", 1)
        at_least(self, "num_workers", 0)
        base, _, index = self.device.partition(":")
        if base not in ("auto", "cpu", "cuda", "mps") or (index and not index.isdigit()):
            raise FieldError("device", self.device, "auto, cpu, cuda or cuda:<index>")
