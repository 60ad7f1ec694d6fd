"""Filter-health numbers on hand-made filters whose answers are known in closed form or by construction."""

from __future__ import annotations

import math

import pytest
import torch

from zfnet_exp.diagnostics.filters import (
    activation_sparsity,
    aliasing_index,
    dead_fraction,
    filter_health,
    filter_rms,
    high_frequency_share,
    rms_spread,
)
from zfnet_exp.diagnostics.layers import capture_activations
from zfnet_exp.viz.grids import filter_grid


def gaussian(k: int, sigma: float) -> torch.Tensor:
    r = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return g.expand(3, k, k).unsqueeze(0)


def checkerboard(k: int) -> torch.Tensor:
    r = torch.arange(k)
    return ((-1.0) ** (r[:, None] + r[None, :])).double().expand(3, k, k).unsqueeze(0)


def test_aliasing_smooth_low_checkerboard_high():
    assert aliasing_index(gaussian(7, 1.5)) < 0.02
    assert aliasing_index(checkerboard(7)) > 0.95
    # AlexNet-sized filters behave the same way
    assert aliasing_index(gaussian(11, 2.0)) < 0.02 < 0.95 < aliasing_index(checkerboard(11))


def test_aliasing_of_a_single_pixel_is_the_area_of_the_band():
    """A delta has a flat spectrum: its score is the share of frequency samples in the band, which tends
    to 1 - pi/16 (square minus the disc of radius 0.25 cycles/pixel)."""
    delta = torch.zeros(1, 3, 7, 7, dtype=torch.float64)
    delta[0, :, 3, 3] = 1.0
    f = torch.fft.fftfreq(64, dtype=torch.float64)
    band = ((f[:, None] ** 2 + f[None, :] ** 2).sqrt() > 0.25).double().mean()
    assert aliasing_index(delta) == pytest.approx(float(band), abs=1e-12)
    assert aliasing_index(delta, size=512) == pytest.approx(1 - math.pi / 16, abs=2e-3)
    # a higher cutoff shrinks the band: 1 - pi * (0.5 * cutoff)^2 for cutoffs inside the square
    assert aliasing_index(delta, cutoff=0.8, size=512) == pytest.approx(1 - math.pi * 0.4**2, abs=2e-3)


def test_aliasing_is_a_mean_over_filters_and_ignores_scale():
    w = torch.cat([gaussian(7, 1.5), checkerboard(7) * 1e-3])
    per = high_frequency_share(w)
    assert aliasing_index(w) == pytest.approx(float(per.mean()))
    assert aliasing_index(w * 100) == pytest.approx(aliasing_index(w))
    assert aliasing_index(torch.zeros(2, 3, 5, 5)) == 0.0


def test_rms_and_dead_fraction_from_weights():
    w = torch.stack([torch.full((3, 5, 5), c) for c in (0.1, -0.2, 0.3, 0.0)])
    assert torch.allclose(filter_rms(w), torch.tensor([0.1, 0.2, 0.3, 0.0]))
    mean, std = rms_spread(w)
    assert mean == pytest.approx(0.15) and std == pytest.approx(math.sqrt(((0.05**2) * 2 + 0.15**2 * 2) / 4))
    assert dead_fraction(weight=w) == pytest.approx(0.25)  # one filter below 1% of the median RMS
    assert dead_fraction(weight=w, rms_threshold=0.25) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="exactly one"):
        dead_fraction()


def test_dead_fraction_and_sparsity_from_activations():
    acts = torch.rand(4, 8, 3, 3) + 0.1
    acts[:, 2] = 0.0
    acts[:, 5] = 0.0
    acts[0, 5, 1, 1] = 0.3  # fires once: alive
    acts[:, 7] = -1.0  # never positive: dead
    assert dead_fraction(acts) == pytest.approx(2 / 8)
    assert activation_sparsity(acts) == pytest.approx((4 * 9 * 3 - 1) / (4 * 8 * 9))


def test_filter_grid_layout_and_normalization():
    w = torch.randn(10, 3, 7, 7)
    w[3] = 0.5  # constant filter -> mid grey
    grid = filter_grid(w, nrow=4, padding=1, scale=2)
    assert grid.shape == (3, 3 * 15 + 1, 4 * 15 + 1)
    cell = grid[:, 1:15, 1:15]  # filter 0
    assert cell.min() == 0 and cell.max() == 1
    assert torch.all(grid[:, 1:15, 1 + 3 * 15 : 15 + 3 * 15] == 0.5)  # filter 3
    assert filter_grid(w[:, :1]).shape[0] == 3


def test_filter_health_keys(tiny_model):
    model = tiny_model(classes=4, widths=8, fc_units=8, init=None).train()
    with torch.no_grad():
        model.features.conv2.weight[:2] = 0.0  # two collapsed filters
    h = filter_health(model)
    assert set(h) >= {"health/conv1/aliasing", "health/conv1/rms_mean", "health/conv5/rms_std"}
    assert h["health/conv2/low_rms_frac"] == pytest.approx(2 / 8)
    assert "health/conv2/aliasing" not in h and "health/conv1/dead_frac" not in h
    with torch.no_grad(), capture_activations(model.eval(), ["conv1", "conv2"]) as acts:
        model(torch.randn(2, 3, 64, 64))
    h = filter_health(model, dict(acts))
    expected = float((acts["conv2"].amax((0, 2, 3)) <= 0).double().mean())
    assert h["health/conv2/dead_frac"] == pytest.approx(expected) and expected >= 2 / 8  # the zeroed two never fire
    # reference: count the zeros of the rectified map by hand (element by element, no vectorized compare)
    flat = acts["conv1"].flatten().tolist()
    assert h["health/conv1/sparsity"] == pytest.approx(sum(v == 0.0 for v in flat) / len(flat), abs=1e-12)
    assert h["health/conv2/sparsity"] >= h["health/conv2/dead_frac"]  # a dead map is zero everywhere
