"""timm-style model registry: ``create_model(name, num_classes, input_size, **overrides)``.

Every name is a preset of :func:`zfnet_exp.models.convnet.modify` arguments on one of the two bases, so a
Table 3 row is a named variant and any other combination is one override away
(``create_model("zfnet", remove=(6, 7))``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .convnet import ALEXNET, ZFNET, ArchSpec, ConvNet, modify
from .init import init_weights

_WIDE345 = {3: 512, 4: 1024, 5: 512}

# name -> (base spec, preset overrides, one-line description)
_MODELS: dict[str, tuple[ArchSpec, dict[str, Any], str]] = {
    "zfnet": (ZFNET, {}, "ZF model, paper Fig. 3"),
    "zfnet_fc2048": (ZFNET, {"fc_units": 2048}, "Table 3: layers 6,7 with 2048 units"),
    "zfnet_fc8192": (ZFNET, {"fc_units": 8192}, "Table 3: layers 6,7 with 8192 units"),
    "zfnet_wide345": (ZFNET, {"conv_widths": _WIDE345}, "Table 3/2(b): layers 3,4,5 with 512,1024,512 maps"),
    "zfnet_wide345_fc8192": (
        ZFNET,
        {"conv_widths": _WIDE345, "fc_units": 8192},
        "Table 3: layers 6,7 with 8192 units and layers 3,4,5 with 512,1024,512 maps",
    ),
    "alexnet": (ALEXNET, {}, "dense single-GPU replication of Krizhevsky et al. 2012"),
    "alexnet_no34": (ALEXNET, {"remove": (3, 4)}, "Table 3: removed layers 3,4"),
    "alexnet_no7": (ALEXNET, {"remove": (7,)}, "Table 3: removed layer 7"),
    "alexnet_no67": (ALEXNET, {"remove": (6, 7)}, "Table 3: removed layers 6,7"),
    "alexnet_no3467": (ALEXNET, {"remove": (3, 4, 6, 7)}, "Table 3: removed layers 3,4,6,7"),
    "alexnet_fc2048": (ALEXNET, {"fc_units": 2048}, "Table 3: layers 6,7 with 2048 units"),
    "alexnet_fc8192": (ALEXNET, {"fc_units": 8192}, "Table 3: layers 6,7 with 8192 units"),
}


def list_models() -> list[str]:
    return sorted(_MODELS)


def describe_models() -> dict[str, str]:
    return {name: _MODELS[name][2] for name in list_models()}


def create_model(
    name: str,
    num_classes: int = 1000,
    input_size: int = 224,
    init: str = "paper",
    init_std: float = 0.01,
    zero_head: bool = False,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model. At ``input_size=224`` it is the paper's network exactly; other sizes keep
    the layer structure and size fc6 to the resulting feature map. ``overrides`` (``remove``, ``fc_units``,
    ``conv_widths``, ``dropout``) are applied on top of the name's preset."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    base, preset, _ = _MODELS[name]
    kwargs = {**preset, **{k: v for k, v in overrides.items() if v is not None}}
    unknown = set(kwargs) - {"remove", "fc_units", "conv_widths", "dropout"}
    if unknown:
        raise ValueError(f"unknown model option(s) {sorted(unknown)}; valid: remove, fc_units, conv_widths, dropout")
    if "remove" in kwargs:
        kwargs["remove"] = tuple(int(x) for x in kwargs["remove"])
    if "conv_widths" in kwargs:
        kwargs["conv_widths"] = {int(k): int(v) for k, v in dict(kwargs["conv_widths"]).items()}
    spec = modify(base, **kwargs)
    model = ConvNet(spec, num_classes=num_classes, input_size=input_size)
    return init_weights(model, init, std=init_std, zero_head=zero_head)
