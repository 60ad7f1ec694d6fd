"""Layer names shared by every diagnostic.

``"conv1"`` .. ``"conv5"`` (and added layers such as ``"conv6"``, ``"conv3b"``) mean the *rectified* output of
that convolution (the output of ``features.reluN``), before pooling; ``"fc6"``/``"fc7"``/``"fc7b"`` the
rectified FC outputs (``classifier.reluN``). Any dotted module name (``"features.pool2"``, ``"layer3.1.act2"``
in a timm ResNet) is accepted too, so the diagnostics work on any CNN built from modules, and
``"last_conv"`` names the deepest entry of :func:`conv_layer_names` on any model (conv5 on ZFNet).

:func:`conv_layer_names` finds the layers a diagnostic shows by default, on any model, from its modules alone:
the first activation module registered after each ``nn.Conv2d`` (and before the next one). On our networks
those are ``features.reluN`` (reported as ``convN``); on a VGG ``features.1``, ``features.4``, ...; on a timm
ResNet the stem's ``act1`` and every block's ``act1`` and ``act2`` (``act2`` rectifies the residual sum, the
block's output). A module that runs several times per forward pass (torchvision ResNet's shared ``relu``) is
taken at its first call by the hooks, as everywhere in the diagnostics.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

_SHORT = re.compile(r"^(conv|fc)(\d+[a-z]?)$")
LAST_CONV = "last_conv"
# Activation modules that can end a conv stage (the ReLU family first: the only ones the deconvnet rectifies).
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
)
# Every elementwise activation module (the gates too). The deconvnet rectifies nn.ReLU only; the others
# back-propagate their true gradient.
ELEMENTWISE_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    *ACTIVATIONS,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Softplus,
    nn.Sigmoid,
    nn.Tanh,
)
# Leaf modules that act on each spatial position independently (in eval mode): receptive-field arithmetic and
# incremental occlusion pass through them. GroupNorm / InstanceNorm / LayerNorm are *not* here: their
# statistics mix positions, so a unit would depend on the whole map.
POINTWISE_MODULES: tuple[type[nn.Module], ...] = (
    *ELEMENTWISE_ACTIVATIONS,
    nn.LocalResponseNorm,
    nn.CrossMapLRN2d,
    nn.BatchNorm2d,
    nn.SyncBatchNorm,
    nn.Dropout,
    nn.Dropout2d,
    nn.AlphaDropout,
    nn.Identity,
)


def resolve_layer(model: nn.Module, layer: str) -> tuple[str, nn.Module]:
    """Map a layer name to ``(dotted module name, module)``; raise a ValueError naming valid choices."""
    modules = dict(model.named_modules())
    if layer == LAST_CONV:
        stages = conv_layer_names(model)
        if not stages:
            raise ValueError(f"{LAST_CONV}: {type(model).__name__} has no activation after a convolution")
        layer = stages[-1]
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
    known = known or conv_layer_names(model)
    hint = ", ".join(known) if known else "any dotted module name of the model"
    raise ValueError(
        f"layer {layer!r} not found in {type(model).__name__}; valid names: {hint} "
        f"(or a dotted module name from model.named_modules())"
    )


def short_name(dotted: str) -> str:
    """``features.relu3`` -> ``conv3``, ``classifier.relu7b`` -> ``fc7b`` (our networks' names); others unchanged."""
    for prefix, kind in (("features.relu", "conv"), ("classifier.relu", "fc")):
        if dotted.startswith(prefix) and _SHORT.match(kind + dotted[len(prefix) :]):
            return kind + dotted[len(prefix) :]
    return dotted


def conv_layer_names(model: nn.Module) -> list[str]:
    """The rectified conv stages of any model, in registration order (module docstring): ``conv1`` ..
    ``conv5`` on our networks, dotted module paths elsewhere."""
    names, conv_seen = [], False
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            conv_seen = True
        elif isinstance(module, nn.Linear):
            conv_seen = False
        elif conv_seen and isinstance(module, ACTIVATIONS):
            names.append(short_name(name))
            conv_seen = False
    return names


def stage_conv(model: nn.Module, layer: str) -> nn.Conv2d | None:
    """The convolution whose stage ``layer`` ends (the same pairing as :func:`conv_layer_names`: the last
    ``nn.Conv2d`` registered before it, with no ``nn.Linear`` in between), the module itself if it is a
    convolution, else None (an FC layer's ReLU)."""
    target = resolve_layer(model, layer)[1]
    if isinstance(target, nn.Conv2d):
        return target
    last = None
    for _, module in model.named_modules():
        if module is target:
            return last if isinstance(target, ACTIVATIONS) else None
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            last = module if isinstance(module, nn.Conv2d) else None
    return None


def layer_label(model: nn.Module, layer: str) -> str:
    """The name logs and figures use for ``layer``: ``conv5`` for ``features.relu5`` or ``last_conv`` on our
    networks, the dotted path elsewhere."""
    return short_name(resolve_layer(model, layer)[0])


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
