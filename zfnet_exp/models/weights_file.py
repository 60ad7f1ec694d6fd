"""Reading a local weights file (``model.checkpoint=``, published ImageNet weights): the parameter dict inside it,
whatever wrapper the saving script put around it. Read through the project's one safe reader (``weights_only=True``,
tensors memory-mapped); a module of its own because both the model builders (:mod:`.external`) and the published
weights' importer (:mod:`.pretrained`) read files this way."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigError
from ..utils.torch_files import load_torch_file


def _state_dict(obj) -> dict[str, torch.Tensor]:
    """The parameter dict inside a checkpoint file: a bare state_dict, or under ``state_dict`` / ``model``
    (Lightning, timm, torchvision reference scripts), with a common ``model.`` / ``module.`` prefix removed."""
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError("model.checkpoint: the file holds no state_dict (a dict of tensors).")
    for prefix in ("model.", "module."):
        if obj and all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return obj


def read_state_dict(path: str | Path, key: str = "model.checkpoint") -> dict[str, torch.Tensor]:
    """The parameter dict in a local weights file (``.pth``/``.pt``/``.ckpt`` read with ``weights_only=True`` and
    tensors memory-mapped, or ``.safetensors``); ``key`` names the option in the error message."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}={str(path)!r} does not exist; give a local weights file (no downloads).")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return _state_dict(load_file(str(path)))
    return _state_dict(load_torch_file(path, "a weights file (a state dict, or a checkpoint holding one)", mmap=True))
