"""The paper's networks inside timm's registry: ``timm.create_model("zfnet", num_classes=...)``.

Registered when :mod:`zfnet_exp.models` is imported (that package imports this module), so any
``import zfnet_exp.models`` (or ``zfnet_exp``'s tasks) makes them available to timm's own tooling:
``timm.list_models("zfnet*")``, ``timm.create_model("alexnet_no34", num_classes=10)``, ``timm.data``'s
``resolve_data_config`` (from the ``pretrained_cfg``: input size, mean/std, crop). There are no pretrained
weights (``pretrained=True`` raises); extra keyword arguments go to :func:`~.registry.create_model`
(``input_size``, ``init``, ``arch``, ...; timm's ``img_size`` is accepted as ``input_size``).

The ``pretrained_cfg`` records the paper's input (224 crop of a 256 resize, ``crop_pct=224/256``) and
ImageNet's mean/std, the statistics of the data the paper trained on (our ``data.normalization=standard``).
"""

from __future__ import annotations

import sys
from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import register_model
from timm.models._registry import generate_default_cfgs

from .registry import _MODELS, create_model

_TIMM_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "features_only", "device", "dtype")


def _cfg(name: str) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": None,
        "crop_pct": 224 / 256,
        "interpolation": "bilinear",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "features.conv1",
        "classifier": "classifier.fc8",
        "license": "see the zfnet-exp repository",
        "description": _MODELS[name][2],
    }


default_cfgs = generate_default_cfgs({name: _cfg(name) for name in _MODELS})


def _entrypoint(name: str):
    def fn(pretrained: bool = False, **kwargs: Any):
        if pretrained:
            raise ValueError(f"{name}: zfnet-exp has no pretrained weights; train one with `python train.py`")
        for key in _TIMM_KWARGS:
            kwargs.pop(key, None)
        if "img_size" in kwargs:
            kwargs["input_size"] = kwargs.pop("img_size")
        if kwargs.pop("in_chans", 3) != 3:
            raise ValueError(f"{name}: the paper's networks take RGB input (in_chans=3)")
        model = create_model(name, **kwargs)
        model.pretrained_cfg = default_cfgs[name].default.to_dict()
        model.default_cfg = model.pretrained_cfg
        return model

    fn.__name__ = name
    fn.__qualname__ = name
    fn.__module__ = __name__
    fn.__doc__ = f"{_MODELS[name][2]} (zfnet-exp; random init)."
    return fn


for _name in _MODELS:
    setattr(sys.modules[__name__], _name, register_model(_entrypoint(_name)))
