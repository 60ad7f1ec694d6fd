"""The rules of :class:`~zfnet_exp.models.LitClassifier`'s options that one value alone cannot say: the layer
table (``model.arch``), the first convolution's settings (``model.first_conv``) and how ``library``, ``name`` and
``arch`` fit together.

The options themselves (names, types, defaults) are declared once, in ``LitClassifier.__init__``; the config
check builds the ``model`` node's schema from that signature as for every other ``_target_`` node
(:mod:`zfnet_exp.schemas.signature`) and runs :func:`check_model` on it, at start, before any data is read.

Why ``arch`` is a plain mapping checked here and not a dict of structured :class:`LayerConfig` values: OmegaConf
2.3 refuses to *add* a plain dict to a dict of structured values (``Invalid type assigned: dict is not a subclass
of LayerConfig``), which would make ``+model.arch.conv6={...}`` fail. Each entry is merged into
:class:`LayerConfig` (types, field names, the norm position choice), then the whole table goes through
:func:`zfnet_exp.models.spec_from_config`, the code that builds the network (ranges, geometry). One class
describes both kinds of layer (the name says which fields apply).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError


class NormPosition(Enum):
    before_pool = "before_pool"  # AlexNet: conv, ReLU, LRN, pool
    after_pool = "after_pool"  # ZF: conv, ReLU, pool, LRN


@dataclass
class PoolConfig:
    kernel: int = 3
    stride: int = 2
    ceil_mode: bool = False


@dataclass
class NormConfig:
    enabled: bool = True
    size: int = 5
    alpha: float = 5e-4  # PyTorch divides by size: the paper's 1e-4 summed over 5 maps
    beta: float = 0.75
    k: float = 2.0
    position: NormPosition = NormPosition.after_pool


@dataclass
class LayerConfig:
    # conv layers (conv<N>): out_channels and kernel required; stride 1, padding 0 when unset
    out_channels: int | None = None
    kernel: int | None = None
    stride: int | None = None
    padding: int | None = None
    pool: PoolConfig | None = None  # null: no pooling
    norm: NormConfig | None = None  # null (or enabled: false): no contrast normalization
    # hidden FC layers (fc<N>, N < 8): units required; dropout 0.5 when unset
    units: int | None = None
    dropout: float | None = None


@dataclass
class FirstConvConfig:
    """Settings of the first convolution alone (the layer Fig. 6 is about); null / 1.0 change nothing."""

    init_std: float | None = None  # N(0, std^2) weights after model.init (null: as the scheme draws them)
    lr_scale: float = 1.0  # its learning rate = model.optimizer.lr x lr_scale
    weight_decay: float | None = None  # its own weight decay (null: the optimizer's)

    def __post_init__(self) -> None:
        if self.init_std is not None and not self.init_std > 0:
            raise ConfigError(
                f"model.first_conv.init_std={self.init_std} is out of range: it must be > 0, or null (use model.init)."
            )
        if not self.lr_scale > 0:
            raise ConfigError(
                f"model.first_conv.lr_scale={self.lr_scale} is out of range: it must be > 0 (1.0: same lr)."
            )
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ConfigError(
                f"model.first_conv.weight_decay={self.weight_decay} is out of range: it must be >= 0, or null."
            )


def _typed(schema: type, key: str, value: Any) -> Any:
    """``value`` merged into the dataclass ``schema``; a wrong type or field is a ConfigError naming ``key``."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), value))
    except OmegaConfBaseException as err:
        full = key + (f".{err.full_key}" if getattr(err, "full_key", None) else "")
        fields = ", ".join(schema.__dataclass_fields__)
        raise ConfigError(f"{full}: {str(err).splitlines()[0]}. The fields of {key} are {fields}.") from None


def typed_layer(name: str, layer: Any) -> LayerConfig | None:
    """One ``model.arch`` entry checked against :class:`LayerConfig` (types, field names, choices)."""
    if layer is None:
        return None
    if not isinstance(layer, dict | DictConfig):
        raise ConfigError(f"model.arch.{name} must be a layer table or null (removed); got {layer!r}.")
    return _typed(LayerConfig, f"model.arch.{name}", layer)


def check_model(options: Any) -> None:
    """The checks of the ``model`` node that involve more than one value (``options`` has its fields as
    attributes): ``optimizer``/``scheduler`` name a class, ``first_conv``'s fields, a timm/torchvision model
    name and no layer table for those libraries, and for this package's networks a preset name or a layer table
    that builds (:func:`zfnet_exp.models.spec_from_config`)."""
    from .arch import spec_from_config
    from .registry import list_models

    for group in ("optimizer", "scheduler"):
        node = getattr(options, group)
        if node is not None and (not isinstance(node, dict | DictConfig) or "_target_" not in node):
            raise ConfigError(
                f"model.{group}={node!r} has no _target_ (the class to build): pick one of conf/model/{group}/ "
                f"(python train.py model/{group}=...) or give model.{group}._target_."
            )
    if options.first_conv is not None:
        _typed(FirstConvConfig, "model.first_conv", options.first_conv)
    if options.library != "zfnet_exp":
        from .external import check_name

        check_name(options.library, options.name)
        if options.arch:
            raise ConfigError(
                f"model.arch describes zfnet-exp's own layer tables; model.library={options.library} builds "
                f"model.name={options.name!r} as that library defines it. Remove the model.arch overrides."
            )
        return
    if options.arch is None:
        if options.name not in list_models():
            raise ConfigError(
                f"model.arch is null and model.name={options.name!r} is not a preset; choose one of: "
                f"{', '.join(list_models())}."
            )
        return
    table = {name: typed_layer(name, layer) for name, layer in options.arch.items()}
    spec_from_config(table, options.input_size, key="model.arch")
