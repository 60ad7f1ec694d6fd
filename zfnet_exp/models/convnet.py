"""One configurable builder for the paper's family of 5-conv / 3-FC networks.

ZFNet, the dense AlexNet replication and every Table 3 ablation differ only in kernel sizes, strides,
paddings, widths, which layers exist and where contrast normalization sits, so they share this builder
instead of being written out eight times. Layer names never shift when a layer is removed (an ablation
without conv3/conv4 still calls its last conv ``conv5``), so diagnostics and logs line up across variants.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import torch
from torch import nn


@dataclass(frozen=True)
class ConvSpec:
    """One convolutional layer and the pooling/normalization that follow it."""

    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    pool: bool = False  # 3x3 stride-2 (overlapping) max-pooling after the ReLU
    norm: bool = False  # local contrast normalization across feature maps


@dataclass(frozen=True)
class LRNSpec:
    """PyTorch LRN parameters. PyTorch divides ``alpha`` by ``size``, so the paper's alpha = 1e-4 (summed,
    not averaged, over 5 maps) is alpha = 5e-4 here."""

    size: int = 5
    alpha: float = 5e-4
    beta: float = 0.75
    k: float = 2.0


@dataclass(frozen=True)
class ArchSpec:
    """Everything that distinguishes one member of the family from another."""

    convs: dict[int, ConvSpec]  # keyed by the paper's layer number (1..5); missing keys = removed layers
    fc_units: dict[int, int] = field(default_factory=lambda: {6: 4096, 7: 4096})  # hidden FC layers
    norm_before_pool: bool = False  # AlexNet: conv, ReLU, LRN, pool; ZF: conv, ReLU, pool, LRN
    pool_ceil_mode: bool = True  # ZF sizes (110 -> 55, 26 -> 13) need cuda-convnet style ceil rounding
    lrn: LRNSpec = LRNSpec()
    dropout: float = 0.5


def _pool_out(size: int, ceil_mode: bool) -> int:
    out = (size - 3) / 2 + 1
    if ceil_mode:
        out = math.ceil((size - 3) / 2) + 1
        if (out - 1) * 2 >= size:  # PyTorch drops a last window that would start in the padding
            out -= 1
        return int(out)
    return int(math.floor(out))


def feature_map_size(spec: ArchSpec, input_size: int) -> int:
    """Spatial size of the last pooled feature map, i.e. what fc6 (or fc8 if 6 and 7 are removed) sees."""
    size = input_size
    for layer in sorted(spec.convs):
        c = spec.convs[layer]
        size = (size + 2 * c.padding - c.kernel) // c.stride + 1
        if size < 1:
            raise ValueError(f"input_size={input_size} is too small: conv{layer} has no output left")
        if c.pool:
            size = _pool_out(size, spec.pool_ceil_mode)
            if size < 1:
                raise ValueError(f"input_size={input_size} is too small: pool{layer} has no output left")
    return size


class ConvNet(nn.Module):
    """``features`` (conv/ReLU/pool/LRN, named conv1, relu1, pool1, norm1, ...) then ``classifier``
    (fc6, relu6, drop6, fc7, relu7, drop7, fc8). Plain ``nn`` modules only, so hook-based tools work."""

    def __init__(self, spec: ArchSpec, num_classes: int = 1000, input_size: int = 224):
        super().__init__()
        self.spec = spec
        self.input_size = input_size
        features: OrderedDict[str, nn.Module] = OrderedDict()
        in_ch = 3
        for layer in sorted(spec.convs):
            c = spec.convs[layer]
            features[f"conv{layer}"] = nn.Conv2d(in_ch, c.out_channels, c.kernel, c.stride, c.padding)
            features[f"relu{layer}"] = nn.ReLU(inplace=False)
            norm = nn.LocalResponseNorm(spec.lrn.size, spec.lrn.alpha, spec.lrn.beta, spec.lrn.k)
            pool = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=spec.pool_ceil_mode)
            stages = []
            if c.norm and spec.norm_before_pool:
                stages.append((f"norm{layer}", norm))
            if c.pool:
                stages.append((f"pool{layer}", pool))
            if c.norm and not spec.norm_before_pool:
                stages.append((f"norm{layer}", norm))
            features.update(stages)
            in_ch = c.out_channels
        self.features = nn.Sequential(features)
        self.flatten = nn.Flatten(1)

        fmap = feature_map_size(spec, input_size)
        classifier: OrderedDict[str, nn.Module] = OrderedDict()
        in_f = in_ch * fmap * fmap
        for layer in sorted(spec.fc_units):
            classifier[f"fc{layer}"] = nn.Linear(in_f, spec.fc_units[layer])
            classifier[f"relu{layer}"] = nn.ReLU(inplace=False)
            classifier[f"drop{layer}"] = nn.Dropout(spec.dropout)
            in_f = spec.fc_units[layer]
        classifier["fc8"] = nn.Linear(in_f, num_classes)
        self.classifier = nn.Sequential(classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


# The two base architectures (paper Fig. 3; Krizhevsky et al. 2012, dense single-GPU replication).
ZFNET = ArchSpec(
    convs={
        1: ConvSpec(96, 7, stride=2, padding=1, pool=True, norm=True),
        2: ConvSpec(256, 5, stride=2, padding=0, pool=True, norm=True),
        3: ConvSpec(384, 3, padding=1),
        4: ConvSpec(384, 3, padding=1),
        5: ConvSpec(256, 3, padding=1, pool=True),
    },
    norm_before_pool=False,
    pool_ceil_mode=True,
)
ALEXNET = ArchSpec(
    convs={
        1: ConvSpec(96, 11, stride=4, padding=2, pool=True, norm=True),
        2: ConvSpec(256, 5, padding=2, pool=True, norm=True),
        3: ConvSpec(384, 3, padding=1),
        4: ConvSpec(384, 3, padding=1),
        5: ConvSpec(256, 3, padding=1, pool=True),
    },
    norm_before_pool=True,
    pool_ceil_mode=False,
)


def modify(
    base: ArchSpec,
    remove: tuple[int, ...] = (),
    fc_units: int | None = None,
    conv_widths: dict[int, int] | None = None,
    dropout: float | None = None,
) -> ArchSpec:
    """The Table 3 knobs: remove layers (3/4 are convs, 6/7 FC), resize FC 6-7, widen conv layers."""
    bad = [layer for layer in remove if layer not in (3, 4, 6, 7)]
    if bad:
        raise ValueError(f"remove={list(remove)}: only layers 3, 4 (conv) and 6, 7 (fc) can be removed")
    convs = {k: v for k, v in base.convs.items() if k not in remove}
    for layer, width in (conv_widths or {}).items():
        if layer not in convs:
            raise ValueError(f"conv_widths names conv{layer}, which this model does not have")
        convs[layer] = replace(convs[layer], out_channels=int(width))
    units = {k: (fc_units or v) for k, v in base.fc_units.items() if k not in remove}
    return replace(base, convs=convs, fc_units=units, dropout=base.dropout if dropout is None else dropout)
