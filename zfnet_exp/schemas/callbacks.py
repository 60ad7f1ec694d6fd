"""``callbacks`` group: one schema per callback class (conf/callbacks/*.yaml). Every node also takes
``enabled`` (read by :func:`zfnet_exp.utils.instantiators.instantiate_group`, never passed to the class).
Layer names need the model: :func:`zfnet_exp.schemas.check_layer_names` checks them once it is built."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import FieldError, at_least, dissect_options, maps_option, one_of


@dataclass
class Callback:
    _target_: str = ""
    enabled: bool = True


@dataclass
class Top9Deconv(Callback):
    layers: list[str] | None = None
    k: int = 9
    maps: Any = 8
    seed: int = 0
    every_n_epochs: int = 1
    maps_per_row: int = 3
    cell_px: int = 96

    def __post_init__(self) -> None:
        at_least(self, "k", 1)
        maps_option(self)
        at_least(self, "every_n_epochs", 1)
        at_least(self, "maps_per_row", 1)
        at_least(self, "cell_px", 8)


@dataclass
class FeatureEvolution(Callback):
    layers: list[str] | None = None
    maps: Any = 6
    epochs: list[int] = field(default_factory=lambda: [1, 2, 5, 10, 20, 30, 40, 64])
    num_images: int = 256
    seed: int = 0
    batch_size: int = 64
    cell_px: int = 96

    def __post_init__(self) -> None:
        maps_option(self)
        at_least(self, "num_images", 1)
        at_least(self, "batch_size", 1)
        at_least(self, "cell_px", 8)
        for e in self.epochs:
            if e < 1:
                raise FieldError("epochs", self.epochs, "1-based epoch numbers (>= 1)")


@dataclass
class Dissect(Callback):
    layers: list[str] | None = None
    num_images: int = 200
    mask_size: int | None = None
    quantile: float = 0.005
    iou_threshold: float = 0.04
    every_n_epochs: int = 1
    seed: int = 0
    batch_size: int = 50
    top_units: int = 12
    figures: bool = True

    def __post_init__(self) -> None:
        dissect_options(self)
        for name in ("num_images", "every_n_epochs", "batch_size", "mask_size"):
            at_least(self, name, 1)
        at_least(self, "top_units", 0)


@dataclass
class FilterHealth(Callback):
    layers: list[str] | None = None
    every_n_epochs: int = 1
    cell_px: int = 96

    def __post_init__(self) -> None:
        at_least(self, "every_n_epochs", 1)
        at_least(self, "cell_px", 8)


@dataclass
class FilterRenormalization(Callback):
    radius: float = 0.1
    layers: list[str] | None = None

    def __post_init__(self) -> None:
        if self.radius <= 0:
            raise FieldError("radius", self.radius, "a positive RMS radius (the paper's 0.1)")


@dataclass
class GradientCentralization(Callback):
    skip_first_conv: bool = False


@dataclass
class TrainSamples(Callback):
    num_images: int = 16
    per_row: int = 8
    cell_px: int = 96

    def __post_init__(self) -> None:
        at_least(self, "num_images", 1)
        at_least(self, "per_row", 1)
        at_least(self, "cell_px", 8)


@dataclass
class OcclusionSensitivity(Callback):
    every_n_epochs: int = 5
    num_probes: int = 4
    patch: int = 16
    stride: int = 4
    fill: float = 0.0
    layer: str | None = "conv5"
    projection: bool = True
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("every_n_epochs", "num_probes", "patch", "stride", "batch_size"):
            at_least(self, name, 1)


@dataclass
class ModelCheckpoint(Callback):
    """The ``lightning.pytorch.callbacks.ModelCheckpoint`` arguments our config sets."""

    dirpath: str | None = None
    filename: str | None = None
    auto_insert_metric_name: bool = True
    monitor: str | None = None
    mode: str = "min"
    save_top_k: int = 1
    save_last: Any = None
    every_n_epochs: int | None = None

    def __post_init__(self) -> None:
        one_of(self, "mode", ("min", "max"))
        at_least(self, "save_top_k", -1)
        at_least(self, "every_n_epochs", 0)


@dataclass
class LearningRateMonitor(Callback):
    logging_interval: str | None = None
    log_momentum: bool = False
    log_weight_decay: bool = False

    def __post_init__(self) -> None:
        one_of(self, "logging_interval", ("step", "epoch"))


# by class name; Lightning's own callbacks are checked on the subset of arguments listed here
SCHEMAS = {
    c.__name__: c
    for c in (
        Top9Deconv,
        FeatureEvolution,
        Dissect,
        FilterHealth,
        FilterRenormalization,
        GradientCentralization,
        TrainSamples,
        OcclusionSensitivity,
    )
}
SUBSET_SCHEMAS = {
    "ModelCheckpoint": ModelCheckpoint,
    "RunCheckpoint": ModelCheckpoint,  # zfnet_exp.callbacks.checkpoint: ModelCheckpoint writing last.ckpt every epoch
    "LearningRateMonitor": LearningRateMonitor,
}
