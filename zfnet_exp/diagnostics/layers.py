"""Layer names shared by every diagnostic.

``"conv1"`` .. ``"conv5"`` mean the *rectified* output of that convolution (the output of ``features.reluN``),
before pooling; ``"fc6"``/``"fc7"`` the rectified FC outputs (``classifier.reluN``). Any dotted module name
(``"features.pool2"``, ``"layer3.1.conv2"`` in a torchvision ResNet) is accepted too, so the diagnostics work on
any CNN built from modules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

_SHORT = re.compile(r"^(conv|fc)(\d+)$")


def resolve_layer(model: nn.Module, layer: str) -> tuple[str, nn.Module]:
    """Map a layer name to ``(dotted module name, module)``; raise a ValueError naming valid choices."""
    modules = dict(model.named_modules())
    m = _SHORT.match(layer)
    if m:
        kind, n = m.groups()
        candidate = f"{'features' if kind == 'conv' else 'classifier'}.relu{n}"
        if candidate in modules:
            return candidate, modules[candidate]
    if layer in modules and layer != "":
        return layer, modules[layer]
    known = [f"conv{k[len('features.relu') :]}" for k in modules if k.startswith("features.relu")]
    known += [f"fc{k[len('classifier.relu') :]}" for k in modules if k.startswith("classifier.relu")]
    hint = ", ".join(known) if known else "any dotted module name of the model"
    raise ValueError(
        f"layer {layer!r} not found in {type(model).__name__}; valid names: {hint} "
        f"(or a dotted module name from model.named_modules())"
    )


def conv_layer_names(model: nn.Module) -> list[str]:
    """The short names (``conv1``, ``conv2``, ...) this model has, in forward order."""
    return [f"conv{k[len('features.relu') :]}" for k, _ in model.named_modules() if k.startswith("features.relu")]


@contextmanager
def capture_activations(
    model: nn.Module, layers: Iterable[str], detach: bool = True, keep: str = "last"
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of ``layers`` during forward passes run inside the ``with`` block.

    The dict is filled on every forward call; with ``keep="last"`` the last call wins, with ``keep="first"``
    the first call after the dict was last cleared wins. The hooks are removed on exit.
    """
    if keep not in ("first", "last"):
        raise ValueError(f"keep={keep!r}: choose 'first' or 'last'")
    store: dict[str, torch.Tensor] = {}
    handles = []
    for layer in layers:
        _, module = resolve_layer(model, layer)

        def hook(_mod, _inp, out, _name=layer):
            if keep == "last" or _name not in store:
                store[_name] = out.detach() if detach else out

        handles.append(module.register_forward_hook(hook))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()
