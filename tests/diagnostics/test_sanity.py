"""Cascading randomization: step 0 is the identity, the caller's model and RNG are untouched, the cascade
runs top-down over the path to the layer; the similarity measures against direct loop computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zfnet_exp.diagnostics.sanity import cascading_randomization, spearman, ssim


def loop_ranks(v: list[float]) -> list[float]:
    order = sorted(range(len(v)), key=lambda i: v[i])
    ranks = [0.0] * len(v)
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def test_spearman_with_ties_matches_loop_reference():
    torch.manual_seed(0)
    a = torch.randint(0, 4, (3, 5, 5)).float()
    b = a + torch.randint(0, 3, (3, 5, 5)).float()
    ref = np.corrcoef(loop_ranks(a.flatten().tolist()), loop_ranks(b.flatten().tolist()))[0, 1]
    assert spearman(a, b) == pytest.approx(ref, abs=1e-6)  # torchmetrics ranks in float32
    assert spearman(a, a.exp()) == pytest.approx(1.0)  # rank-based: any increasing map
    assert math.isnan(spearman(a, torch.ones_like(a)))


def test_ssim_matches_window_loop_reference():
    torch.manual_seed(1)
    a, b = torch.rand(1, 13, 13), torch.rand(1, 13, 13)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, b) == pytest.approx(ssim(b, a))
    x, y = a[0].double().numpy(), b[0].double().numpy()
    x, y = (x - x.min()) / (x.max() - x.min()), (y - y.min()) / (y.max() - y.min())
    r = np.arange(11) - 5.0
    g = np.exp(-(r**2) / (2 * 1.5**2))
    w = np.outer(g, g) / g.sum() ** 2
    vals = []
    for i in range(3):
        for j in range(3):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * px * px).sum() - mx**2, (w * py * py).sum() - my**2
            cxy = (w * px * py).sum() - mx * my
            vals.append(((2 * mx * my + 1e-4) * (2 * cxy + 9e-4)) / ((mx**2 + my**2 + 1e-4) * (vx + vy + 9e-4)))
    assert ssim(a, b) == pytest.approx(float(np.mean(vals)), abs=1e-10)


def test_ssim_equals_torchmetrics_on_the_interior_windows():
    """Peer oracle: torchmetrics' SSIM map (same Gaussian window, constants, data range) restricted to the
    windows that lie fully inside the image is exactly ours; its mean over all pixels differs only through
    the reflect-padded border windows (see :func:`ssim`)."""
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    torch.manual_seed(3)
    a, b = torch.rand(3, 40, 40).double(), torch.rand(3, 40, 40).double()
    b = 0.6 * a + 0.4 * b

    def scaled(t):
        return ((t - t.min()) / (t.max() - t.min()))[None]

    _, full = tm_ssim(scaled(a), scaled(b), data_range=1.0, sigma=1.5, return_full_image=True)
    assert ssim(a, b) == pytest.approx(float(full[..., 5:-5, 5:-5].mean()), abs=1e-12)
    assert abs(ssim(a, b) - float(full.mean())) > 1e-4  # the border convention is a real difference


@pytest.mark.parametrize("similarity", ["ssim", "spearman"])
def test_cascade_starts_at_one_and_leaves_the_model_alone(similarity, tiny_model):
    model = tiny_model(classes=4, fc_units=8, seed=2).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randn(2, 3, 64, 64)
    rng = torch.get_rng_state()
    scores, projections = cascading_randomization(
        model, images, "conv3", 1, similarity=similarity, return_projections=True
    )
    assert [n for n, _ in scores] == ["original", "features.conv3", "features.conv2", "features.conv1"]
    assert scores[0][1] == pytest.approx(1.0, abs=1e-6)  # torchmetrics' Spearman ranks in float32
    assert all(-1.0 <= s <= 1.0 + 1e-9 for _, s in scores[1:])
    # the sanity check's point: each further randomized layer takes the projection further from the original
    # (measured: ssim 1 > 0.64 > 0.52 > 0.29, spearman 1 > 0.51 > 0.37 > 0.07 on this model), down to a map
    # that keeps little of it
    values = [v for _, v in scores]
    assert all(a > b + 0.05 for a, b in zip(values, values[1:])), scores
    assert values[-1] < 0.5, scores
    assert not torch.equal(projections[0], projections[-1])
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # deterministic for a given seed
    again = cascading_randomization(model, images, "conv3", 1, similarity=similarity)
    assert [n for n, _ in again] == [n for n, _ in scores]
    assert [v for _, v in again] == pytest.approx([v for _, v in scores])
