"""timm-style model registry: ``create_model(name, num_classes, input_size, **overrides)``, and ``build_model``,
the one function that turns a model config (ours, timm's or torchvision's) into a network.

Every registered name is a preset: one of the two base layer tables (:data:`~.convnet.ZFNET`,
:data:`~.convnet.ALEXNET`) plus layer edits, so a Table 3 row is a named variant and any other architecture is
one edit away (``create_model("zfnet", arch={"conv1": {"kernel": 11, "stride": 4}})``, the paper's Fig. 6
comparison). ``conf/model/<name>.yaml`` writes the same tables out for Hydra (tests/test_architectures.py
checks that the two agree layer by layer).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..errors import ConfigError
from .arch import apply_edits, legacy_edits, spec_from_config
from .convnet import ALEXNET, ZFNET, ArchSpec, ConvNet
from .init import init_first_conv, init_weights

_WIDE345 = {"conv3": {"out_channels": 512}, "conv4": {"out_channels": 1024}, "conv5": {"out_channels": 512}}
_FC2048 = {"fc6": {"units": 2048}, "fc7": {"units": 2048}}
_FC8192 = {"fc6": {"units": 8192}, "fc7": {"units": 8192}}

# name -> (base layer table, layer edits, one-line description)
_MODELS: dict[str, tuple[ArchSpec, dict[str, Any], str]] = {
    "zfnet": (ZFNET, {}, "ZF model, paper Fig. 3"),
    "zfnet_fc2048": (ZFNET, _FC2048, "Table 3: layers 6,7 with 2048 units"),
    "zfnet_fc8192": (ZFNET, _FC8192, "Table 3: layers 6,7 with 8192 units"),
    "zfnet_wide345": (ZFNET, _WIDE345, "Table 3/2(b): layers 3,4,5 with 512,1024,512 maps"),
    "zfnet_wide345_fc8192": (
        ZFNET,
        {**_WIDE345, **_FC8192},
        "Table 3: layers 6,7 with 8192 units and layers 3,4,5 with 512,1024,512 maps",
    ),
    "alexnet": (ALEXNET, {}, "dense single-GPU replication of Krizhevsky et al. 2012"),
    "alexnet_no34": (ALEXNET, {"conv3": None, "conv4": None}, "Table 3: removed layers 3,4"),
    "alexnet_no7": (ALEXNET, {"fc7": None}, "Table 3: removed layer 7"),
    "alexnet_no67": (ALEXNET, {"fc6": None, "fc7": None}, "Table 3: removed layers 6,7"),
    "alexnet_no3467": (
        ALEXNET,
        {"conv3": None, "conv4": None, "fc6": None, "fc7": None},
        "Table 3: removed layers 3,4,6,7",
    ),
    "alexnet_fc2048": (ALEXNET, _FC2048, "Table 3: layers 6,7 with 2048 units"),
    "alexnet_fc8192": (ALEXNET, _FC8192, "Table 3: layers 6,7 with 8192 units"),
}
LIBRARIES = ("zfnet_exp", "timm", "torchvision")
_LEGACY = ("remove", "fc_units", "conv_widths", "dropout")


def list_models() -> list[str]:
    return sorted(_MODELS)


def describe_models() -> dict[str, str]:
    return {name: _MODELS[name][2] for name in list_models()}


def preset_spec(name: str) -> ArchSpec:
    """The layer table of a registered name."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    base, edits, _ = _MODELS[name]
    return apply_edits(base, edits)


def is_preset(name: str, arch: Any = None, library: str = "zfnet_exp") -> bool:
    """Whether a model config (name + layer table) is exactly the registered preset ``name``: e.g. to decide
    if a paper row applies to a checkpoint whose ``model.arch`` may have been edited."""
    if library != "zfnet_exp" or name not in _MODELS:
        return False
    return arch is None or isinstance(arch, str) or spec_from_config(arch) == preset_spec(name)


def create_model(
    name: str,
    num_classes: int = 1000,
    input_size: int = 224,
    init: str | None = "paper",
    init_std: float = 0.01,
    zero_head: bool = False,
    arch: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model. At ``input_size=224`` it is the paper's network exactly; other sizes keep
    the layer structure and size fc6 to the resulting feature map.

    ``arch``: layer edits on top of the preset (see :func:`zfnet_exp.models.arch.apply_edits`). The earlier
    Table 3 knobs ``remove`` (layer numbers), ``fc_units``, ``conv_widths`` ({layer number: maps}) and
    ``dropout`` are still accepted and applied first.
    """
    spec = preset_spec(name)
    unknown = set(overrides) - set(_LEGACY)
    if unknown:
        raise ValueError(f"unknown model option(s) {sorted(unknown)}; valid: arch, {', '.join(_LEGACY)}")
    legacy = {k: v for k, v in overrides.items() if v is not None}
    if legacy.get("remove") is not None:
        legacy["remove"] = tuple(int(x) for x in legacy["remove"])
    if legacy:
        spec = apply_edits(spec, legacy_edits(spec, **legacy))
    if arch:
        spec = apply_edits(spec, arch, key="arch")
    return build_convnet(spec, num_classes, input_size, init, init_std, zero_head)


def build_convnet(
    spec: ArchSpec, num_classes: int, input_size: int, init: str | None, init_std: float, zero_head: bool
) -> ConvNet:
    from .arch import check_geometry

    check_geometry(spec, input_size, key="arch")
    model = ConvNet(spec, num_classes=num_classes, input_size=input_size)
    return init_weights(model, init, std=init_std, zero_head=zero_head)


def build_model(
    library: str = "zfnet_exp",
    name: str = "zfnet",
    arch: Any = None,
    num_classes: int = 1000,
    input_size: int = 224,
    init: str | None = "paper",
    init_std: float = 0.01,
    zero_head: bool = False,
    checkpoint: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    first_conv_std: float | None = None,
) -> nn.Module:
    """The network a model config describes (what :class:`~zfnet_exp.models.LitClassifier` trains).

    ``library="zfnet_exp"``: ``arch`` is the whole layer table (``model.arch``; ``name`` is then only a
    label), or None for the registered preset ``name`` (with the legacy ``overrides``). ``"timm"`` /
    ``"torchvision"``: ``name`` is that library's model name, built with random weights (``init=None`` keeps
    the library's own initialization); ``checkpoint`` loads local weights (nothing is downloaded).
    """
    if library not in LIBRARIES:
        raise ConfigError(f"model.library={library!r} is not a valid choice; choose one of: {', '.join(LIBRARIES)}.")
    if library == "zfnet_exp":
        if arch is None:
            model = create_model(name, num_classes, input_size, init, init_std, zero_head, **(overrides or {}))
        else:
            spec = spec_from_config(arch, input_size)
            model = build_convnet(spec, num_classes, input_size, init, init_std, zero_head)
    else:
        from .external import create_external

        model = init_weights(create_external(library, name, num_classes, input_size), init, init_std, zero_head)
    if first_conv_std is not None:
        init_first_conv(model, first_conv_std)
    if checkpoint and not any(p.is_meta for p in model.parameters()):  # a structure-only build loads nothing
        from .external import load_weights

        load_weights(model, checkpoint)
    return model
