"""Model registry: parameter counts and per-layer shapes against the paper (Fig. 3; the fact sheet) and an
independent count from the layer tables."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zfnet_exp.models import create_model, list_models

# Independent reference: the layer tables written out by hand (paper Fig. 3 / Krizhevsky et al., dense),
# as (name, in_channels, out_channels, kernel) for convs; FC sizes follow from the final 6x6 map.
ZF_CONVS = {1: (3, 96, 7), 2: (96, 256, 5), 3: (256, 384, 3), 4: (384, 384, 3), 5: (384, 256, 3)}
ALEX_CONVS = {1: (3, 96, 11), 2: (96, 256, 5), 3: (256, 384, 3), 4: (384, 384, 3), 5: (384, 256, 3)}
VARIANTS = {
    "zfnet": (ZF_CONVS, (), 4096, {}),
    "zfnet_fc2048": (ZF_CONVS, (), 2048, {}),
    "zfnet_fc8192": (ZF_CONVS, (), 8192, {}),
    "zfnet_wide345": (ZF_CONVS, (), 4096, {3: 512, 4: 1024, 5: 512}),
    "zfnet_wide345_fc8192": (ZF_CONVS, (), 8192, {3: 512, 4: 1024, 5: 512}),
    "alexnet": (ALEX_CONVS, (), 4096, {}),
    "alexnet_no34": (ALEX_CONVS, (3, 4), 4096, {}),
    "alexnet_no7": (ALEX_CONVS, (7,), 4096, {}),
    "alexnet_no67": (ALEX_CONVS, (6, 7), 4096, {}),
    "alexnet_no3467": (ALEX_CONVS, (3, 4, 6, 7), 4096, {}),
    "alexnet_fc2048": (ALEX_CONVS, (), 2048, {}),
    "alexnet_fc8192": (ALEX_CONVS, (), 8192, {}),
}


def expected_params(convs, removed, fc, widths, classes=1000, fmap=6):
    total, cin = 0, 3
    for layer in (1, 2, 3, 4, 5):
        if layer in removed:
            continue
        _, cout, k = convs[layer]
        cout = widths.get(layer, cout)
        total += cin * cout * k * k + cout
        cin = cout
    fin = cin * fmap * fmap
    for layer in (6, 7):
        if layer in removed:
            continue
        total += fin * fc + fc
        fin = fc
    return total + fin * classes + classes


def test_registry_lists_every_table3_variant():
    assert sorted(VARIANTS) == list_models()


def test_paper_parameter_counts():
    assert sum(p.numel() for p in create_model("zfnet").parameters()) == 62_357_608
    assert sum(p.numel() for p in create_model("alexnet").parameters()) == 62_378_344


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_parameter_count_and_forward(name):
    convs, removed, fc, widths = VARIANTS[name]
    model = create_model(name, num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == expected_params(convs, removed, fc, widths)
    # module names stay the paper's even when layers are removed
    names = dict(model.named_modules())
    for layer in (1, 2, 3, 4, 5):
        assert (f"features.conv{layer}" in names) == (layer not in removed)
    for layer in (6, 7):
        assert (f"classifier.fc{layer}" in names) == (layer not in removed)
    assert "classifier.fc8" in names
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def _shapes(model, size):
    x, out = torch.zeros(1, 3, size, size), {}
    for name, module in model.features.named_children():
        x = module(x)
        out[name] = tuple(x.shape[1:])
    return out


def test_zfnet_spatial_sizes_and_layer_order():
    s = _shapes(create_model("zfnet"), 224)
    assert [s[k][1] for k in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5")] == [
        110,
        55,
        26,
        13,
        13,
        13,
        13,
        6,
    ]
    assert list(s)[:8] == ["conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2", "norm2"]


def test_alexnet_spatial_sizes_and_layer_order():
    s = _shapes(create_model("alexnet"), 224)
    assert [s[k][1] for k in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5")] == [
        55,
        27,
        27,
        13,
        13,
        13,
        13,
        6,
    ]
    assert list(s)[:8] == ["conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2", "pool2"]


def test_standard_modules_and_paper_hyperparameters():
    m = create_model("zfnet")
    lrn = m.features.norm1
    assert isinstance(lrn, nn.LocalResponseNorm)
    # PyTorch averages over `size`, so the paper's summed alpha=1e-4 is 5e-4 here
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 5e-4, 0.75, 2.0)
    assert m.classifier.drop6.p == 0.5 and m.classifier.drop7.p == 0.5
    assert m.features.conv1.kernel_size == (7, 7) and m.features.conv1.stride == (2, 2)


def test_small_input_keeps_structure_and_sizes_fc6():
    m = create_model("zfnet", num_classes=10, input_size=112)
    assert _shapes(m, 112)["pool5"] == (256, 3, 3)
    assert m.classifier.fc6.in_features == 256 * 3 * 3
    assert m(torch.zeros(2, 3, 112, 112)).shape == (2, 10)


def test_init_schemes():
    torch.manual_seed(0)
    paper = create_model("zfnet", num_classes=10, input_size=112, init="paper")
    w = paper.classifier.fc6.weight
    assert abs(w.std().item() - 0.01) < 5e-4 and paper.features.conv2.bias.abs().max() == 0
    kaiming = create_model("zfnet", num_classes=10, input_size=112, init="kaiming")
    fan_in = 96 * 5 * 5
    assert abs(kaiming.features.conv2.weight.std().item() - (2 / fan_in) ** 0.5) < 2e-3


def test_unknown_names_list_valid_choices():
    with pytest.raises(ValueError, match="choose one of: alexnet"):
        create_model("nope")
    with pytest.raises(ValueError, match="unknown init scheme"):
        create_model("zfnet", init="xavier")
    with pytest.raises(ValueError, match="has no layer 9"):
        create_model("zfnet", remove=(9,))
