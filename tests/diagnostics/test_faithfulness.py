"""Faithfulness metrics on hand-made maps and toy models with a known answer.

References: the RISE blur kernel against an independent numpy construction of scipy's
``gaussian_filter(delta, 5)`` (symmetric padding + correlation); AUCs against closed forms; the pointing
game against hand-placed points; deletion/insertion against a linear model whose evidence is known.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from zfnet_exp.diagnostics.faithfulness import (
    causal_curve,
    center_baseline,
    deletion_auc,
    faithfulness_table,
    gaussian_blur,
    insertion_auc,
    max_point,
    pointing_accuracy,
    pointing_game,
    rise_kernel,
    trapezoid_auc,
    wilson_interval,
)
from zfnet_exp.utils.tables import write_csv


def test_rise_kernel_matches_scipy_construction():
    sigma, radius = 5.0, 20  # scipy: radius = int(4 * sigma + 0.5)
    t = np.arange(-radius, radius + 1)
    w = np.exp(-0.5 * (t / sigma) ** 2)
    w /= w.sum()
    delta = np.zeros(11)
    delta[5] = 1
    k1 = np.correlate(np.pad(delta, radius, mode="symmetric"), w, "valid")  # scipy mode='reflect'
    k = rise_kernel(11, 5.0)
    np.testing.assert_allclose(k.numpy(), np.outer(k1, k1), atol=1e-15)
    assert abs(float(k.sum()) - 1) < 1e-12 and torch.equal(k, k.T)


def test_blur_keeps_constants_inside_and_uses_zero_padding():
    x = torch.full((1, 3, 20, 20), 2.0)
    y = gaussian_blur(x)
    assert torch.allclose(y[..., 5:-5, 5:-5], torch.full_like(y[..., 5:-5, 5:-5], 2.0), atol=1e-6)
    assert float(y[0, 0, 0, 0]) < 1.5  # zero padding darkens the corner, as in RISE's conv2d


def test_trapezoid_auc():
    assert torch.allclose(trapezoid_auc(torch.tensor([[0.5, 0.5, 0.5]])), torch.tensor([0.5]))
    assert torch.allclose(trapezoid_auc(torch.linspace(0, 1, 11)[None]), torch.tensor([0.5]))
    assert torch.allclose(trapezoid_auc(torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0]])), torch.tensor([0.125]))


class Evidence(nn.Module):
    """Two classes: logit_0 = a matched filter (a checkerboard) over a known region R, logit_1 = 0.
    Its evidence per pixel is known exactly, and both the zero substrate and the blur destroy it."""

    def __init__(self, region: torch.Tensor, pattern: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", (region * pattern).float())

    def forward(self, x):
        s = (x * self.weight).sum((1, 2, 3)) * 0.03  # full evidence: logit 3.24, p = 0.96
        return torch.stack([s, torch.zeros_like(s)], 1)


def toy():
    region = torch.zeros(16, 16, dtype=torch.bool)
    region[4:10, 6:12] = True
    ys, xs = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    checker = ((ys + xs) % 2 * 2 - 1).float()
    torch.manual_seed(0)
    images = torch.where(region, checker, 0.2 * torch.randn(3, 3, 16, 16))
    return Evidence(region, checker).eval(), images, region, checker


def evidence(images, region, checker):
    return (images * region * checker).sum(1)


def test_perfect_ranking_beats_random():
    model, images, region, checker = toy()
    perfect = evidence(images, region, checker)  # the true evidence per pixel
    rand = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    d_perfect, curve = deletion_auc(model, images, perfect, 0, n_steps=16, batch_size=7)
    d_random, _ = deletion_auc(model, images, rand, 0, n_steps=16, batch_size=7)
    i_perfect, _ = insertion_auc(model, images, perfect, 0, n_steps=16, batch_size=7)
    i_random, _ = insertion_auc(model, images, rand, 0, n_steps=16, batch_size=7)
    assert torch.all(d_perfect < d_random - 0.1) and torch.all(i_perfect > i_random + 0.1)
    assert curve.shape == (3, 17)
    with torch.no_grad():
        p_clean = model(images).softmax(1)[:, 0].double()
        p_zero = model(torch.zeros_like(images)).softmax(1)[:, 0].double()
    torch.testing.assert_close(curve[:, 0], p_clean)  # nothing deleted yet
    torch.testing.assert_close(curve[:, -1], p_zero)  # everything replaced by the substrate
    # after the region (36 px = 2.25 steps of 16 px) is gone, class 0 only has the background left
    assert torch.all(curve[:, 3] < 0.5 + 1e-6)
    # a middle point against a hand-made deletion: zero the 5 * 16 most random-salient pixels
    _, rand_curve = deletion_auc(model, images, rand, 0, n_steps=16)
    x = images.clone()
    for b in range(3):
        top = torch.argsort(rand[b].flatten(), descending=True)[:80]
        x[b].view(3, -1)[:, top] = 0
    with torch.no_grad():
        torch.testing.assert_close(rand_curve[:, 5], model(x).softmax(1)[:, 0].double())


def test_insertion_curve_endpoints():
    model, images, region, _ = toy()
    curve = causal_curve(model, images, torch.rand(3, 16, 16), [0, 0, 0], "insertion", n_steps=5)
    with torch.no_grad():
        p_blur = model(gaussian_blur(images)).softmax(1)[:, 0].double()
        p_clean = model(images).softmax(1)[:, 0].double()
    torch.testing.assert_close(curve[:, 0], p_blur)
    torch.testing.assert_close(curve[:, -1], p_clean)
    with pytest.raises(ValueError, match="mode"):
        causal_curve(model, images, torch.rand(3, 16, 16), 0, "erase")


def test_pointing_game_hits_and_misses():
    mask = torch.zeros(3, 64, 64, dtype=torch.bool)
    mask[:, 20:30, 20:30] = True
    maps = torch.zeros(3, 64, 64)
    maps[0, 25, 25] = 1  # on the object
    maps[1, 25, 44] = 1  # 15 px right of the mask edge (x=29): not < 15 -> miss at 15, hit at 16
    maps[2, 60, 60] = 1  # far away
    assert max_point(maps).tolist() == [[25, 25], [25, 44], [60, 60]]
    assert pointing_game(maps, mask, 15).tolist() == [True, False, False]
    assert pointing_game(maps, mask, 16).tolist() == [True, True, False]
    assert pointing_game(maps, mask, 0).tolist() == [True, False, False]  # exact mask
    hits = pointing_game(maps, mask, 16)
    assert abs(pointing_accuracy(hits) - 2 / 3) < 1e-12
    assert pointing_accuracy(hits, torch.tensor([0, 0, 1])) == 0.5  # per-class mean: (1 + 0) / 2


def test_center_baseline_points_at_centre():
    c = center_baseline(2, 31, 40)
    assert max_point(c).tolist() == [[15, 20], [15, 20]]
    mask = torch.zeros(2, 31, 40, dtype=torch.bool)
    mask[0, 14:17, 19:22] = True
    assert pointing_game(c, mask, 1).tolist() == [True, False]


def test_faithfulness_table(tmp_path):
    model, images, region, checker = toy()
    masks = region.expand(3, 16, 16)
    maps = {"perfect": evidence(images, region, checker), "random": torch.rand(3, 16, 16)}
    rows = faithfulness_table(model, images, 0, masks, maps, n_steps=8)
    assert [r["method"] for r in rows] == ["perfect", "random", "center"]
    assert set(rows[0]) == {
        "method",
        "n",
        "deletion_auc",
        "insertion_auc",
        "pointing_acc",
        "pointing_lo",
        "pointing_hi",
        "pointing_acc_offcentre",
        "n_offcentre",
    }
    perfect = rows[0]
    assert perfect["pointing_acc"] == 1.0 and perfect["n"] == 3
    assert perfect["deletion_auc"] < rows[1]["deletion_auc"]
    assert perfect["insertion_auc"] > rows[1]["insertion_auc"]
    path = write_csv(rows, tmp_path / "faith.csv")
    assert path.read_text().splitlines()[0] == (
        "method,n,deletion_auc,insertion_auc,pointing_acc,pointing_lo,pointing_hi,pointing_acc_offcentre,n_offcentre"
    )


def test_random_baseline_row_is_at_chance():
    """The uniform-noise row points at a uniformly random pixel: its pointing accuracy estimates the object's
    share of the image (reference: the mask area, with tolerance 0), here 1/4 of the image."""
    n = 400
    masks = torch.zeros(n, 8, 8, dtype=torch.bool)
    masks[:, :4, :4] = True
    rows = faithfulness_table(
        nn.Identity(),
        torch.rand(n, 3, 8, 8),
        0,
        masks,
        {},
        tolerance=0,
        include_center=False,
        include_random=True,
        metrics=("pointing",),
    )
    assert [r["method"] for r in rows] == ["random"]
    assert rows[0]["pointing_lo"] < 0.25 < rows[0]["pointing_hi"]


def test_wilson_interval_matches_the_closed_form():
    # reference: the textbook Wilson score interval for 5/10 (0.2366, 0.7634), for 0/n: [0, z^2 / (n + z^2)] and
    # for k/n in general (z = 1.959964..., the normal distribution's 97.5% point, for a 95% interval)
    z = 1.959963984540054
    lo, hi = wilson_interval(torch.tensor([True] * 5 + [False] * 5))
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson_interval(torch.zeros(20, dtype=torch.bool))
    assert lo == 0.0 and hi == pytest.approx(z**2 / (20 + z**2))
    k, n = 3, 17
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson_interval(torch.arange(n) < k) == pytest.approx((centre - half, centre + half))


def test_offcentre_column_separates_object_from_centre_bias():
    # two images: object in the top-left corner (the centre baseline misses) and object in the middle (it hits)
    images = torch.rand(2, 3, 16, 16)
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[0, :4, :4] = True
    masks[1, 6:10, 6:10] = True
    on_object = masks.float() + 0.01 * torch.rand(2, 16, 16)
    rows = faithfulness_table(
        nn.Identity(), images, 0, masks, {"object": on_object}, tolerance=1, metrics=("pointing",)
    )
    obj, centre = rows
    assert set(obj) == {
        "method",
        "n",
        "pointing_acc",
        "pointing_lo",
        "pointing_hi",
        "pointing_acc_offcentre",
        "n_offcentre",
    }
    assert obj["n_offcentre"] == centre["n_offcentre"] == 1
    assert obj["pointing_acc"] == 1.0 and obj["pointing_acc_offcentre"] == 1.0
    assert centre["pointing_acc"] == 0.5 and centre["pointing_acc_offcentre"] == 0.0
    with pytest.raises(ValueError, match="unknown faithfulness metrics"):
        faithfulness_table(nn.Identity(), images, 0, masks, {}, metrics=("pointing", "auc"))
