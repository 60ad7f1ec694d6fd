"""Schema of the ``model`` config group: what a network is (ours, timm's or torchvision's) and, for our
family, its whole layer table under ``model.arch``.

Registered in Hydra's ConfigStore as ``model/model_schema``; every ``conf/model/*.yaml`` lists it first in its
defaults, so a wrong type or unknown key of the model node (``model.init_std=abc``, ``model.nmae=x``) fails at
composition, and so does a misspelt field of an existing layer (``model.arch.conv1.kernal=7``: Hydra asks for
``+``). Each layer is then checked against :class:`LayerConfig` (types, fields, the norm position choice), its
ranges and the geometry (a kernel of 0, a dropout of 1.5, a layer whose input has shrunk to nothing) in
:meth:`ModelConfig.__post_init__`, i.e. when the config is converted with ``OmegaConf.to_object`` at start
(:func:`validate_model`), by the same code that builds the network (:func:`zfnet_exp.models.spec_from_config`);
every problem is a :class:`~zfnet_exp.errors.ConfigError` naming the full key and the valid range (exit code 2,
one paragraph).

Why ``arch`` is ``Dict[str, Any]`` and not ``Dict[str, LayerConfig]``: OmegaConf 2.3 refuses to *add* a plain
dict to a dict of structured values (``Invalid type assigned: dict is not a subclass of LayerConfig``), which
would make ``+model.arch.conv6={...}`` fail; the per-layer schema is applied at start instead.

Layer names (see :mod:`zfnet_exp.models.convnet`): ``conv<N>[a-z]`` and hidden ``fc<N>[a-z]`` with N < 8, in
(N, letter) order; ``fc8`` is the classifier. Add a layer with ``+model.arch.conv6={out_channels: 256,
kernel: 3, padding: 1}`` or ``+model.arch.fc7b={units: 4096}``; remove one with ``model.arch.conv3=null``.
One class, :class:`LayerConfig`, describes both kinds (the name says which fields apply), because a
structured dict needs one value type for its entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any  # noqa: UP035  (OmegaConf reads these annotations)

from hydra.core.config_store import ConfigStore
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


@dataclass
class ModelConfig:
    _target_: str = "zfnet_exp.models.LitClassifier"
    _recursive_: bool = False
    library: str = "zfnet_exp"  # zfnet_exp | timm | torchvision
    name: str = "zfnet"  # preset label (zfnet_exp) or the library's model name (timm: resnet18, ...)
    arch: dict[str, Any] | None = None  # zfnet_exp only: the layer table {name: LayerConfig or null}
    checkpoint: str | None = None  # local weights to start from (no downloads)
    num_classes: int | None = None  # null: taken from the datamodule
    input_size: int = 224
    init: str | None = "paper"  # paper | kaiming | null (keep the library's own initialization)
    init_std: float = 0.01
    zero_head: bool = False
    first_conv: FirstConvConfig = field(default_factory=FirstConvConfig)
    optimizer: Any = None
    scheduler: Any = None
    scheduler_interval: str = "epoch"
    scheduler_monitor: str | None = None
    label_smoothing: float = 0.0
    # GPU path (issue 13): NHWC weights/inputs; torch.compile of the training step (diagnostics stay eager)
    channels_last: bool = False
    compile: bool = False
    compile_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from ..models import INIT_SCHEMES, LIBRARIES, list_models, spec_from_config

        if self.library not in LIBRARIES:
            raise ConfigError(
                f"model.library={self.library!r} is not a valid choice; choose one of: {', '.join(LIBRARIES)} "
                f"(or pick a config: model=zfnet, model=timm, model=torchvision)."
            )
        if self.init is not None and self.init not in INIT_SCHEMES:
            raise ConfigError(
                f"model.init={self.init!r} is not a valid choice; choose one of: {', '.join(INIT_SCHEMES)}, or null "
                f"(keep the network's own initialization). Example: python train.py model.init=kaiming"
            )
        if self.input_size < 1:
            raise ConfigError(f"model.input_size={self.input_size} is out of range: it must be an integer >= 1.")
        if not 0.0 <= self.label_smoothing <= 1.0:
            raise ConfigError(
                f"model.label_smoothing={self.label_smoothing} is out of range: it must be in [0.0, 1.0] (0: none)."
            )
        if self.scheduler_interval not in ("step", "epoch"):
            raise ConfigError(
                f"model.scheduler_interval={self.scheduler_interval!r} is not a valid choice; choose step or epoch."
            )
        for group in ("optimizer", "scheduler"):
            node = getattr(self, group)
            if node is not None and (not isinstance(node, dict | DictConfig) or "_target_" not in node):
                raise ConfigError(
                    f"model.{group}={node!r} has no _target_ (the class to build): pick one of conf/model/{group}/ "
                    f"(python train.py model/{group}=...) or give model.{group}._target_."
                )
        if self.num_classes is not None and self.num_classes < 1:
            raise ConfigError(f"model.num_classes={self.num_classes} is out of range: it must be >= 1 (or null).")
        if self.library != "zfnet_exp":
            from ..models.external import check_name

            check_name(self.library, self.name)
            if self.arch:
                raise ConfigError(
                    f"model.arch describes zfnet-exp's own layer tables; model.library={self.library} builds "
                    f"model.name={self.name!r} as that library defines it. Remove the model.arch overrides."
                )
            return
        if self.arch is None:
            if self.name not in list_models():
                raise ConfigError(
                    f"model.arch is null and model.name={self.name!r} is not a preset; choose one of: "
                    f"{', '.join(list_models())}."
                )
            return
        table = {name: _typed_layer(name, layer) for name, layer in self.arch.items()}
        spec_from_config(table, self.input_size, key="model.arch")


def _typed_layer(name: str, layer: Any) -> Any:
    """One ``model.arch`` entry checked against :class:`LayerConfig` (types, field names, choices)."""
    if layer is None:
        return None
    if not isinstance(layer, (dict, DictConfig)):
        raise ConfigError(f"model.arch.{name} must be a layer table or null (removed); got {layer!r}.")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(LayerConfig), layer))
    except OmegaConfBaseException as err:
        key = f"model.arch.{name}" + (f".{err.full_key}" if getattr(err, "full_key", None) else "")
        reason = str(err).splitlines()[0]
        fields = ", ".join(LayerConfig.__dataclass_fields__)
        raise ConfigError(f'{key}: {reason}. A layer has the fields {fields} (README "Models").') from None


def validate_model(model_cfg: DictConfig) -> ModelConfig:
    """Convert the composed ``model`` node into :class:`ModelConfig` (running every check) or raise
    :class:`ConfigError` with the message of the first problem."""
    return OmegaConf.to_object(model_cfg)


def register_configs(cs: ConfigStore | None = None) -> None:
    (cs or ConfigStore.instance()).store(group="model", name="model_schema", node=ModelConfig)


register_configs()
