"""The offline tasks' ``device`` option (``auto | cpu | cuda | cuda:<index> | mps``), read by one rule.

Why one place: analyze, eval, transfer and the Fig. 6 summary all take the same option; eval and transfer also hand
it to a Lightning ``Trainer``, which spells a device as ``accelerator`` + ``devices``. Both spellings come from
here, so ``device=auto`` means the same thing (the GPU when there is one, else the CPU) to every loop.
"""

from __future__ import annotations

from typing import Any

import torch


def torch_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; any other name as torch spells it."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def trainer_device(name: str | torch.device = "auto") -> dict[str, Any]:
    """The same device as Lightning ``Trainer`` arguments: ``{"accelerator": ..., "devices": ...}`` (one device;
    ``cuda:1`` -> the GPU with index 1)."""
    device = torch_device(name)
    if device.type == "cuda":
        return {"accelerator": "gpu", "devices": [device.index] if device.index is not None else 1}
    return {"accelerator": device.type, "devices": 1}
