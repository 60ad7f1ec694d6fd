"""One builder for the paper's family of conv / FC networks, driven by a layer table.

ZFNet, the dense AlexNet replication and every Table 3 ablation differ only in kernel sizes, strides, paddings,
widths, pooling, where contrast normalization sits and which layers exist, so they are all one
:class:`ArchSpec`: an ordered table of named conv layers and hidden FC layers. Every property of every layer is
a field here and a config key under ``model.arch.<layer>`` (:mod:`zfnet_exp.models.options`).

Layer names carry the paper's numbering and never shift: an ablation without conv3/conv4 still calls its last
conv ``conv5``, so diagnostics and logs line up across variants. Names are ``conv<N>[letter]`` and
``fc<N>[letter]``, ordered by (N, letter): ``conv6`` follows ``conv5``, ``conv3b`` sits between conv3 and conv4,
and a third hidden FC layer after fc7 is ``fc7b``. ``fc8`` is always the classifier and always last (the
paper's output layer), so hidden FC layers are numbered below 8.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn

_NAME = re.compile(r"^(conv|fc)(\d+)([a-z]?)$")


@dataclass(frozen=True)
class PoolSpec:
    """Max-pooling after the ReLU. 3x3 stride 2 (overlapping) in both papers; ZF sizes (110 -> 55, 26 -> 13)
    need cuda-convnet style ceil rounding, AlexNet's (55 -> 27) floor rounding."""

    kernel: int = 3
    stride: int = 2
    ceil_mode: bool = False


@dataclass(frozen=True)
class NormSpec:
    """Local contrast normalization across feature maps (PyTorch LRN). PyTorch divides ``alpha`` by ``size``,
    so the paper's alpha = 1e-4 (summed, not averaged, over 5 maps) is alpha = 5e-4 here.
    ``before_pool``: AlexNet order (conv, ReLU, LRN, pool); False: ZF order (conv, ReLU, pool, LRN)."""

    size: int = 5
    alpha: float = 5e-4
    beta: float = 0.75
    k: float = 2.0
    before_pool: bool = False


@dataclass(frozen=True)
class ConvSpec:
    """One convolutional layer and the pooling / normalization that follow its ReLU."""

    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    pool: PoolSpec | None = None
    norm: NormSpec | None = None


@dataclass(frozen=True)
class FCSpec:
    """One hidden fully connected layer: Linear, ReLU, Dropout(p=dropout)."""

    units: int
    dropout: float = 0.5


def layer_order(name: str) -> tuple[str, int, str]:
    """Sort key of a layer name (``conv3b`` -> ("conv", 3, "b")); ValueError if it is not a layer name."""
    m = _NAME.match(name)
    if not m:
        raise ValueError(f"{name!r} is not a layer name (conv<N>[a-z] or fc<N>[a-z], e.g. conv6, fc7b)")
    return m.group(1), int(m.group(2)), m.group(3)


@dataclass(frozen=True)
class ArchSpec:
    """The layer table: conv layers then hidden FC layers, each keyed by name, in forward order."""

    convs: dict[str, ConvSpec]
    fcs: dict[str, FCSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for group, kind in ((self.convs, "conv"), (self.fcs, "fc")):
            for name in group:
                if layer_order(name)[0] != kind:
                    raise ValueError(f"{name!r} is listed among the {kind} layers")
        object.__setattr__(self, "convs", dict(sorted(self.convs.items(), key=lambda kv: layer_order(kv[0]))))
        object.__setattr__(self, "fcs", dict(sorted(self.fcs.items(), key=lambda kv: layer_order(kv[0]))))


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def pool_out(size: int, pool: PoolSpec) -> int:
    """PyTorch's MaxPool2d output size (padding 0): in ceil mode a last window that would start past the
    input is dropped."""
    if pool.ceil_mode:
        out = math.ceil((size - pool.kernel) / pool.stride) + 1
        if (out - 1) * pool.stride >= size:
            out -= 1
        return int(out)
    return (size - pool.kernel) // pool.stride + 1


def layer_sizes(spec: ArchSpec, input_size: int) -> list[tuple[str, int]]:
    """Spatial size after every conv and pool stage, as ``[("conv1", 110), ("pool1", 55), ...]``.

    Raises :class:`GeometryError` naming the first stage that has no output left, so a bad architecture fails
    before a network is built rather than with a shape error inside ``forward``.
    """
    size, out = input_size, []
    for name, c in spec.convs.items():
        n = layer_order(name)[1:]
        new = conv_out(size, c.kernel, c.stride, c.padding)
        if new < 1:
            raise GeometryError(
                name,
                f"{name} ({c.kernel}x{c.kernel} kernel, padding {c.padding}) gets a {size}x{size} input at "
                f"input_size={input_size} and has no output left.",
            )
        size = new
        out.append((name, size))
        if c.pool is not None:
            new = pool_out(size, c.pool)
            if new < 1:
                raise GeometryError(
                    name,
                    f"the {c.pool.kernel}x{c.pool.kernel} pooling after {name} gets a {size}x{size} map at "
                    f"input_size={input_size} and has no output left.",
                    sub="pool",
                )
            size = new
            out.append((f"pool{n[0]}{n[1]}", size))
    return out


def feature_map_size(spec: ArchSpec, input_size: int) -> int:
    """Spatial size of the last feature map, i.e. what the first FC layer (or fc8) sees."""
    sizes = layer_sizes(spec, input_size)
    return sizes[-1][1] if sizes else input_size


class GeometryError(ValueError):
    """An architecture that leaves no spatial output at some layer for the given input size."""

    def __init__(self, layer: str, message: str, sub: str | None = None):
        super().__init__(message)
        self.layer = layer
        self.sub = sub  # "pool" when the pooling, not the convolution, runs out


class ConvNet(nn.Module):
    """``features`` (conv/ReLU/pool/LRN, named conv1, relu1, pool1, norm1, ...) then ``classifier``
    (fc6, relu6, drop6, fc7, relu7, drop7, fc8). Plain ``nn`` modules only, so hook-based tools work.

    timm's model contract: ``forward_features(x)`` is the conv stack (the last pooled map),
    ``forward_head(features)`` the rest (flatten and the FC layers), and ``forward = forward_head o
    forward_features`` by construction; diagnostics rely on this, never on the class.
    """

    def __init__(self, spec: ArchSpec, num_classes: int = 1000, input_size: int = 224):
        super().__init__()
        self.spec = spec
        self.input_size = input_size
        self.num_classes = num_classes
        features: OrderedDict[str, nn.Module] = OrderedDict()
        in_ch = 3
        for name, c in spec.convs.items():
            n = name[len("conv") :]
            features[name] = nn.Conv2d(in_ch, c.out_channels, c.kernel, c.stride, c.padding)
            features[f"relu{n}"] = nn.ReLU(inplace=False)
            stages: list[tuple[str, nn.Module]] = []
            if c.pool is not None:
                stages.append((f"pool{n}", nn.MaxPool2d(c.pool.kernel, c.pool.stride, ceil_mode=c.pool.ceil_mode)))
            if c.norm is not None:
                lrn = (f"norm{n}", nn.LocalResponseNorm(c.norm.size, c.norm.alpha, c.norm.beta, c.norm.k))
                stages.insert(0 if c.norm.before_pool else len(stages), lrn)
            features.update(stages)
            in_ch = c.out_channels
        self.features = nn.Sequential(features)
        self.flatten = nn.Flatten(1)

        fmap = feature_map_size(spec, input_size)
        classifier: OrderedDict[str, nn.Module] = OrderedDict()
        in_f = in_ch * fmap * fmap
        for name, f in spec.fcs.items():
            n = name[len("fc") :]
            classifier[name] = nn.Linear(in_f, f.units)
            classifier[f"relu{n}"] = nn.ReLU(inplace=False)
            classifier[f"drop{n}"] = nn.Dropout(f.dropout)
            in_f = f.units
        classifier["fc8"] = nn.Linear(in_f, num_classes)
        self.classifier = nn.Sequential(classifier)
        self.num_features = in_f  # timm: width of the pre-logits features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.flatten(x)
        return self.classifier[:-1](x) if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier.fc8

    def reset_classifier(self, num_classes: int) -> None:
        """timm's contract: a fresh last layer (``nn.Linear``'s own init) with ``num_classes`` outputs, on the old
        one's device, the rest of the network as it is (fine-tuning on another label set)."""
        old = self.classifier.fc8
        self.classifier.fc8 = nn.Linear(old.in_features, num_classes).to(old.weight.device, old.weight.dtype)
        self.num_classes = num_classes


# The two base architectures (paper Fig. 3; Krizhevsky et al. 2012, dense single-GPU replication).
_ZF_POOL = PoolSpec(3, 2, ceil_mode=True)
_AX_POOL = PoolSpec(3, 2, ceil_mode=False)
ZFNET = ArchSpec(
    convs={
        "conv1": ConvSpec(96, 7, stride=2, padding=1, pool=_ZF_POOL, norm=NormSpec(before_pool=False)),
        "conv2": ConvSpec(256, 5, stride=2, padding=0, pool=_ZF_POOL, norm=NormSpec(before_pool=False)),
        "conv3": ConvSpec(384, 3, padding=1),
        "conv4": ConvSpec(384, 3, padding=1),
        "conv5": ConvSpec(256, 3, padding=1, pool=_ZF_POOL),
    },
    fcs={"fc6": FCSpec(4096), "fc7": FCSpec(4096)},
)
ALEXNET = ArchSpec(
    convs={
        "conv1": ConvSpec(96, 11, stride=4, padding=2, pool=_AX_POOL, norm=NormSpec(before_pool=True)),
        "conv2": ConvSpec(256, 5, padding=2, pool=_AX_POOL, norm=NormSpec(before_pool=True)),
        "conv3": ConvSpec(384, 3, padding=1),
        "conv4": ConvSpec(384, 3, padding=1),
        "conv5": ConvSpec(256, 3, padding=1, pool=_AX_POOL),
    },
    fcs={"fc6": FCSpec(4096), "fc7": FCSpec(4096)},
)
