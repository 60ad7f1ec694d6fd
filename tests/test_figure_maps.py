"""The figures' choice of feature maps is a property of the layer, not of how its name is spelled: ``conv5``,
``features.relu5`` and ``last_conv`` (one module of ZFNet) pick the same maps in Fig. 2 and Fig. 4, the maps the
documented seed (``seed + sum of the canonical name's character codes``) draws."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from zfnet_exp.diagnostics.topk import mine_topk
from zfnet_exp.figures import fig2, fig4
from zfnet_exp.figures.maps import choose_maps
from zfnet_exp.models import create_model
from zfnet_exp.utils.tensors import pick_maps

SPELLINGS = ("conv5", "features.relu5", "last_conv")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("zfnet", num_classes=3, input_size=64).eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(6, 3, 64, 64, generator=g), torch.tensor([0, 1, 2, 0, 1, 2]), torch.arange(6))


def test_every_spelling_of_a_layer_picks_the_canonical_maps(model):
    """Reference: a private generator drawn by hand with the seed offset by the canonical name "conv5"."""
    g = torch.Generator().manual_seed(0 + sum(map(ord, "conv5")))
    expected = sorted(torch.randperm(256, generator=g)[:8].tolist())
    assert all(choose_maps(model, s, 256, 8, 0) == expected for s in SPELLINGS)
    # seeding by the spelling itself (the old behaviour) would draw other maps for the dotted name
    assert pick_maps(256, 8, 0, "features.relu5") != expected
    # explicit lists and "all" are taken as given whatever the spelling
    assert choose_maps(model, "features.relu5", 256, [7, 3], 0) == [7, 3]
    assert choose_maps(model, "last_conv", 4, "all", 0) == [0, 1, 2, 3]


def test_fig2_and_fig4_show_the_same_maps_and_pixels_for_every_spelling(model, images):
    """Reference: each figure computed with the canonical name; the aliases must give the same maps, the
    same top-k images and identical projections."""
    topk = mine_topk(model, images, SPELLINGS, k=2)
    ref = fig2.compute(model, images, "conv5", topk["conv5"], 2, 0, "cpu")
    ref4 = fig4.compute(model, images, range(6), ["conv5"], 2, 0, 6, "cpu", epoch=1)
    assert ref.maps == choose_maps(model, "conv5", 256, 2, 0)
    for spelling in SPELLINGS[1:]:
        panels = fig2.compute(model, images, spelling, topk[spelling], 2, 0, "cpu")
        assert panels.maps == ref.maps
        assert torch.equal(panels.topk.indices[panels.maps], ref.topk.indices[ref.maps])
        assert torch.equal(panels.projections, ref.projections) and torch.equal(panels.patches, ref.patches)
        column = fig4.compute(model, images, range(6), [spelling], 2, 0, 6, "cpu", epoch=1)
        assert column.records[spelling] == ref4.records["conv5"]
        assert torch.equal(column.cells[spelling], ref4.cells["conv5"])
