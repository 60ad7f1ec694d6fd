"""``model`` group: ``LitClassifier``'s options (conf/model/*.yaml). Interim schema kept from the former
``tasks/validate.py`` checks (architecture name, init scheme, overrides keys) plus types and ranges; the
architecture issue owns this module and its per-layer checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..models import INIT_SCHEMES, list_models
from .base import FieldError, at_least, between, one_of

OVERRIDE_KEYS = ("remove", "fc_units", "conv_widths", "dropout")


@dataclass
class Model:
    _target_: str = "zfnet_exp.models.LitClassifier"
    _recursive_: bool = False
    arch: str = "zfnet"
    num_classes: int | None = None
    input_size: int = 224
    init: str = "paper"
    init_std: float = 0.01
    zero_head: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    scheduler_interval: str = "epoch"
    scheduler_monitor: str | None = None
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        one_of(self, "arch", list_models())
        one_of(self, "init", INIT_SCHEMES)
        at_least(self, "num_classes", 2)
        at_least(self, "input_size", 64)
        if self.init_std <= 0:
            raise FieldError("init_std", self.init_std, "a positive standard deviation")
        between(self, "label_smoothing", 0.0, 1.0)
        one_of(self, "scheduler_interval", ("step", "epoch"))
        unknown = sorted(set(self.overrides) - set(OVERRIDE_KEYS))
        if unknown:
            raise FieldError("overrides", self.overrides, f"a mapping with keys among {', '.join(OVERRIDE_KEYS)}")
        for name in ("optimizer", "scheduler"):
            node = getattr(self, name)
            if node is not None and "_target_" not in node:
                raise FieldError(name, node, "a node with a _target_ (conf/model/optimizer/, conf/model/scheduler/)")
