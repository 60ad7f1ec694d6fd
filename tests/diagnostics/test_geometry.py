"""Receptive fields against an independent computation: the set of input pixels with a non-zero gradient of
the unit (autograd), on a copy of the network where nothing can make a gradient vanish by accident (all
weights and inputs positive, zero biases, max-pools replaced by average pools of the same geometry, LRN
replaced by the identity: both are spatially pointwise or position-preserving changes that leave the
receptive field as it is)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from zfnet_exp.diagnostics.geometry import layer_geometry, receptive_field, receptive_field_patch, trace_chain
from zfnet_exp.models import create_model

NARROW = {1: 8, 2: 8, 3: 8, 4: 8, 5: 8}


def gradient_support_model(model: nn.Module) -> nn.Module:
    m = copy.deepcopy(model).double().eval()
    for name, mod in list(m.features.named_children()):
        if isinstance(mod, nn.MaxPool2d):
            setattr(m.features, name, nn.AvgPool2d(mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode))
        elif isinstance(mod, nn.LocalResponseNorm):
            setattr(m.features, name, nn.Identity())
        elif isinstance(mod, nn.Conv2d):
            with torch.no_grad():
                mod.weight.fill_(1.0 / mod.weight[0].numel())
                mod.bias.zero_()
    return m


@pytest.mark.parametrize("name,size", [("zfnet", 112), ("alexnet", 99), ("zfnet", 71)])
def test_box_equals_gradient_support(name, size):
    model = create_model(name, num_classes=4, input_size=size, fc_units=8, conv_widths=NARROW)
    probe = gradient_support_model(model)
    for n in range(1, 6):
        layer = f"conv{n}"
        geom = layer_geometry(model, layer, size)
        h, w = geom.map_size
        units = sorted({(0, 0), (h - 1, w - 1), (h // 2, w // 2), (0, w - 1), (h - 1, w // 3)})
        x = torch.rand(len(units), 3, size, size, dtype=torch.float64) + 0.5
        x.requires_grad_(True)
        out = probe.features[: list(dict(probe.features.named_children())).index(f"relu{n}") + 1](x)
        assert out.shape[-2:] == (h, w)
        sel = torch.stack([out[i, 0, y, xx] for i, (y, xx) in enumerate(units)]).sum()
        (g,) = torch.autograd.grad(sel, x)
        for i, (y, xx) in enumerate(units):
            support = g[i].abs().sum(0) > 0
            y0, x0, y1, x1 = geom.box(y, xx)
            expected = torch.zeros_like(support)
            expected[y0:y1, x0:x1] = True
            assert torch.equal(support, expected), (name, layer, (y, xx), geom.box(y, xx))
        assert (y0, x0, y1, x1) == receptive_field(model, layer, y, xx, size)


def test_paper_sizes_at_224():
    z = create_model("zfnet", conv_widths=NARROW, fc_units=8)
    assert [layer_geometry(z, f"conv{n}").rf_size[0] for n in range(1, 6)] == [7, 27, 75, 107, 139]
    assert [layer_geometry(z, f"conv{n}").map_size[0] for n in range(1, 6)] == [110, 26, 13, 13, 13]
    a = create_model("alexnet", conv_widths=NARROW, fc_units=8)
    assert [layer_geometry(a, f"conv{n}").rf_size[0] for n in range(1, 6)] == [11, 51, 99, 131, 163]


def test_patch_is_padded_to_full_size_and_centred():
    model = create_model("zfnet", num_classes=4, input_size=112, fc_units=8, conv_widths=NARROW)
    image = torch.arange(3 * 112 * 112, dtype=torch.float32).reshape(3, 112, 112) + 1
    geom = layer_geometry(model, "conv3", 112)
    rh, rw = geom.rf_size
    # an interior unit: the plain slice
    y, x = 3, 3
    uy0, ux0, uy1, ux1 = geom.box(y, x, clip=False)
    assert uy0 >= 0 and uy1 <= 112
    assert torch.equal(receptive_field_patch(model, image, "conv3", y, x), image[:, uy0:uy1, ux0:ux1])
    # a corner unit: the real pixels sit bottom-right, the missing top/left is filled
    patch = receptive_field_patch(model, image, "conv3", 0, 0, fill=-7.0)
    assert patch.shape == (3, rh, rw)
    y0, x0, y1, x1 = geom.box(0, 0)
    off = -geom.start[0]
    assert torch.equal(patch[:, off : off + (y1 - y0), off : off + (x1 - x0)], image[:, y0:y1, x0:x1])
    assert bool((patch[:, :off] == -7).all()) and bool((patch[:, :, :off] == -7).all())


def test_non_chain_is_refused():
    torchvision = pytest.importorskip("torchvision")
    resnet = torchvision.models.resnet18()
    with pytest.raises(ValueError, match="not a chain"):
        trace_chain(resnet, "layer1.0", (1, 3, 64, 64))
    # the stem is a chain: conv 7/2 p3, maxpool 3/2 p1
    assert layer_geometry(resnet, "maxpool", 64).rf_size == (11, 11)
