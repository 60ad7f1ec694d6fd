"""``trainer`` group: the ``lightning.pytorch.Trainer`` arguments our configs set. Only these are checked here
(Lightning takes dozens more and checks them itself)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from lightning.fabric.connector import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS

from .base import FieldError, at_least, number_or_fraction, one_of

PRECISIONS = (*typing.get_args(_PRECISION_INPUT_STR), *typing.get_args(_PRECISION_INPUT_STR_ALIAS))
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


@dataclass
class Trainer:
    _target_: str = "lightning.pytorch.Trainer"
    default_root_dir: str | None = None
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    sync_batchnorm: bool = False
    precision: str | None = None
    max_epochs: int | None = None
    max_steps: int = -1
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = 1
    check_val_every_n_epoch: int | None = 1
    val_check_interval: Any = None
    log_every_n_steps: int | None = None
    num_sanity_val_steps: int | None = None
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    limit_test_batches: Any = None
    overfit_batches: Any = 0.0
    deterministic: Any = None
    benchmark: bool | None = None
    fast_dev_run: Any = False

    def __post_init__(self) -> None:
        one_of(self, "accelerator", ACCELERATORS)
        one_of(self, "precision", PRECISIONS)
        at_least(self, "num_nodes", 1)
        if self.max_epochs is not None and self.max_epochs != -1 and self.max_epochs < 1:
            raise FieldError("max_epochs", self.max_epochs, "a number of epochs >= 1 (or -1: no limit)")
        at_least(self, "max_steps", -1)
        at_least(self, "gradient_clip_val", 0)
        at_least(self, "accumulate_grad_batches", 1)
        at_least(self, "check_val_every_n_epoch", 1)
        at_least(self, "log_every_n_steps", 1)
        at_least(self, "num_sanity_val_steps", -1)
        for name in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "overfit_batches"):
            number_or_fraction(self, name)
        devices = self.devices
        if not (devices == "auto" or isinstance(devices, list) or (isinstance(devices, int) and devices >= -1)):
            if not (isinstance(devices, str) and devices.replace(",", "").strip().isdigit()):
                raise FieldError("devices", devices, "a number of devices (>= 1; -1: all), auto, or a list of ids")
        if self.deterministic not in (None, True, False, "warn"):
            raise FieldError("deterministic", self.deterministic, "true, false or warn")
