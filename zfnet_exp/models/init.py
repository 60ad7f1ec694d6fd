"""Weight initialization schemes.

``paper``: the ZF paper says "weights initialized to 1e-2 and biases to 0". Read literally that is the
constant 0.01, which would make every filter identical and never break symmetry, so we follow the common
reading (and AlexNet's stated practice): weights ~ N(0, 0.01^2), biases 0. On its own this trains the 8-layer
network only with inputs in the raw [-128, 128] pixel range the paper used (data.normalization=paper).

``None``: keep the initialization the network was built with (timm's or torchvision's own, e.g. for BatchNorm
models), only ``zero_head`` applies.

``kaiming``: He et al. 2015 normal init (fan-in, ReLU gain) for conv and FC weights, biases 0: the modern
choice, which keeps activation variance constant through the ReLU stack whatever the input scale.
"""

from __future__ import annotations

from torch import nn

INIT_SCHEMES = ("paper", "kaiming")


def init_weights(
    model: nn.Module, scheme: str | None = "paper", std: float = 0.01, zero_head: bool = False
) -> nn.Module:
    """Initialize conv/linear layers by ``scheme``. ``zero_head`` sets the last layer's weights to zero so
    the network starts from uniform predictions (loss exactly ln C) instead of confident random logits,
    which a BN-free network otherwise first "unlearns" by shrinking all its activations."""
    if scheme is not None and scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {', '.join(INIT_SCHEMES)}")
    for m in model.modules():
        if scheme is not None and isinstance(m, (nn.Conv2d, nn.Linear)):
            if scheme == "paper":
                nn.init.normal_(m.weight, 0.0, std)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if zero_head and linears:  # a network whose classifier is a 1x1 conv keeps its head as built
        nn.init.zeros_(linears[-1].weight)
    return model


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    """The network's first convolution (the one whose filters Fig. 6 shows), in module order."""
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def init_first_conv(model: nn.Module, std: float) -> nn.Module:
    """Re-draw the first convolution's weights from N(0, std^2) (bias 0), whatever the scheme of the rest.

    Why a separate scale for the first layer: Kaiming's fan-in rule gives a 7x7x3 filter an RMS of
    sqrt(2/147) = 0.117, above the paper's renormalization radius 0.1, so every conv1 filter starts (and, under
    Adam, stays) on the radius as white noise that the first layer's small, structured gradient never
    outgrows. A small first-layer scale (the paper's own 0.01) lets the learned part dominate (README
    "Default recipe" has the measurements).
    """
    conv = first_conv(model)
    if conv is None:
        raise ValueError("model.first_conv.init_std is set but the model has no nn.Conv2d layer")
    nn.init.normal_(conv.weight, 0.0, std)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return model
