"""Invariance curves (Fig. 5): exact zeros at the identity, transform conventions checked on synthetic
images by hand, tidy rows, CSV and one PNG per transform."""

from __future__ import annotations

import csv

import pytest
import torch

from zfnet_exp.diagnostics.invariance import (
    default_values,
    invariance_curves,
    transform,
)
from zfnet_exp.utils.tables import write_csv
from zfnet_exp.viz.invariance_figure import invariance_figures


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model(size=48, classes=5, widths={1: 8, 2: 16, 3: 16, 4: 16, 5: 16}, fc_units=24)


def test_translation_is_an_exact_shift():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    down = transform(x, "translation", 3, fill=-7.0)
    assert torch.equal(down[:, :, 3:], x[:, :, :5]) and torch.all(down[:, :, :3] == -7.0)
    up = transform(x, "translation", -2)
    assert torch.equal(up[:, :, :6], x[:, :, 2:]) and torch.all(up[:, :, 6:] == 0)


def test_scale_and_rotation_conventions():
    x = torch.zeros(1, 1, 32, 32)
    x[..., 14:18, 14:18] = 1.0  # a centred 4x4 square
    big = transform(x, "scale", 2.0)
    assert big.shape == x.shape
    assert abs(float(big.sum()) - 4 * float(x.sum())) < 1.0  # area x4, still centred
    coords = torch.arange(32, dtype=torch.float32)
    com_y = float((big[0, 0].sum(1) * coords).sum() / big.sum())
    com_x = float((big[0, 0].sum(0) * coords).sum() / big.sum())
    assert abs(com_y - 15.5) < 1e-4 and abs(com_x - 15.5) < 1e-4  # zoomed about the centre
    small = transform(x, "scale", 0.5, fill=0.0)
    assert small.shape == x.shape and float(small.sum()) < float(x.sum())
    bar = torch.zeros(1, 1, 33, 33)
    bar[..., 16, 4:29] = 1.0  # horizontal bar through the centre
    rot = transform(bar, "rotation", 90.0, fill=0.0)
    assert float(rot[..., 4:29, 16].sum()) > 20 and float(rot[..., 16, :10].sum()) < 1.5  # now vertical
    corners = transform(torch.ones(1, 3, 33, 33), "rotation", 45.0, fill=-1.0)
    assert torch.all(corners[..., 0, 0] == -1.0)  # the corner comes from outside the frame
    for kind, identity in (("translation", 0), ("scale", 1.0), ("rotation", 0.0), ("rotation", 360.0)):
        assert torch.equal(transform(x, kind, identity), x)


def test_curves_zero_at_identity_and_tidy(model):
    torch.manual_seed(1)
    images = torch.randn(3, 3, 48, 48)
    values = {"translation": [-8, 0, 8], "scale": [1.0, 1.4], "rotation": [0.0, 90.0, 360.0]}
    rows = invariance_curves(model, images, [0, 1, 2], ("conv1", "fc7"), values, batch_size=4)
    assert len(rows) == (3 + 2 + 3) * 3
    assert set(rows[0]) == {"transform", "value", "image", "label", "dist_conv1", "dist_fc7", "prob"}
    with torch.no_grad():
        clean = model(images).softmax(1)
    for r in rows:
        if (r["transform"], r["value"]) in {
            ("translation", 0.0),
            ("scale", 1.0),
            ("rotation", 0.0),
            ("rotation", 360.0),
        }:
            assert r["dist_conv1"] == 0.0 and r["dist_fc7"] == 0.0
            assert abs(r["prob"] - float(clean[r["image"], r["label"]])) < 1e-6
        else:
            assert r["dist_conv1"] > 0
    # an independent check of one non-identity distance
    shifted = transform(images, "translation", 8)
    store = {}
    h = model.features.relu1.register_forward_hook(lambda m, i, o: store.setdefault("a", []).append(o.clone()))
    with torch.no_grad():
        model(images)
        model(shifted)
    h.remove()
    ref = (store["a"][0] - store["a"][1]).flatten(1).double().norm(dim=1)
    got = [r["dist_conv1"] for r in rows if r["transform"] == "translation" and r["value"] == 8.0]
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float64), ref, rtol=1e-5, atol=1e-6)


def test_csv_and_figures_show_the_rows(model, tmp_path):
    """The CSV reads back as the rows, and every plotted line is exactly one image's curve from the rows
    (reference: the rows themselves, filtered by hand)."""
    images = torch.randn(2, 3, 48, 48)
    values = {"translation": [-4, 0, 4], "scale": [1.0, 1.2], "rotation": [0.0, 30.0]}
    rows = invariance_curves(model, images, [1, 3], values=values)
    csv_path = write_csv(rows, tmp_path / "invariance.csv")
    with csv_path.open() as f:
        read = list(csv.DictReader(f))
    assert len(read) == len(rows) == 14 and float(read[0]["value"]) == -4.0
    figs = invariance_figures(rows, names=["a", "b"])
    assert list(figs) == ["translation", "scale", "rotation"]
    metrics = ["dist_conv1", "dist_fc7", "prob"]
    for kind, fig in figs.items():
        axes = fig.axes
        assert len(axes) == len(metrics)
        for ax, metric in zip(axes, metrics):
            assert [line.get_label() for line in ax.lines] == ["a", "b"]
            for i, line in enumerate(ax.lines):
                want = sorted((r["value"], r[metric]) for r in rows if r["transform"] == kind and r["image"] == i)
                assert list(line.get_xdata()) == [v for v, _ in want]
                assert list(line.get_ydata()) == [m for _, m in want]


def test_default_values_follow_the_paper():
    v = default_values(224)
    assert v["translation"][0] == -60 and v["translation"][-1] == 60
    assert v["scale"][0] == 1.0 and v["scale"][-1] == 1.8
    assert v["rotation"][0] == 0 and v["rotation"][-1] == 350
    assert default_values(112)["translation"][-1] == 30
