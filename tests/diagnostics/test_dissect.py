"""Network Dissection (zfnet_exp.diagnostics.dissect) against hand-computed and brute-force references.

References: NetDissect's rule worked out by hand for planted units (a unit that fires, graded, exactly on a rare
concept), and a NumPy re-derivation (``np.percentile`` thresholds, a hand-written bilinear upsampling with
PyTorch's ``align_corners=False`` source coordinates, IoU from dataset-level sums) on a small random network.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from zfnet_exp.diagnostics.dissect import HistogramQuantile, dissect, exact_thresholds


def _planted(n_images=20, side=32, rare=121, seed=0):
    """Images whose channel 0 is a graded (tie-free) signal exactly on concept "rare" (``rare`` of the
    ``n_images * side**2`` positions), channel 1 constant 1 (fires everywhere), channel 2 zero (fires nowhere)."""
    g = torch.Generator().manual_seed(seed)
    total = n_images * side * side
    where = torch.randperm(total, generator=g)[:rare]
    rare_mask = torch.zeros(total, dtype=torch.bool)
    rare_mask[where] = True
    rare_mask = rare_mask.view(n_images, side, side)
    big = torch.rand(n_images, side, side, generator=g) < 0.3
    images = torch.zeros(n_images, 3, side, side)
    images[:, 0][rare_mask] = 1 + torch.randperm(rare, generator=g).float() / rare  # distinct values in [1, 2)
    images[:, 1] = 1.0
    masks = torch.stack([rare_mask, big, ~rare_mask & ~big], 1)
    return images, masks


def _identity_net(channels=3):
    conv = nn.Conv2d(channels, channels, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(channels)[:, :, None, None])
    return nn.Sequential(OrderedDict(features=nn.Sequential(OrderedDict(conv1=conv, relu1=nn.ReLU())))).eval()


def test_planted_unit_gets_its_concept_with_the_hand_computed_iou():
    images, masks = _planted()
    res = dissect(_identity_net(), TensorDataset(images, masks), ["conv1"], ["rare", "big", "rest"], batch_size=7)
    r = res["conv1"]
    # by hand: n = 20 * 32 * 32 = 20480 values; NumPy's percentile at 99.5 sits at rank p = 0.995 * 20479 =
    # 20376.605, between the 20377th and 20378th smallest, so the 103 largest values exceed it. All 103 lie on
    # the rare concept (121 positions, 0.59%), the unit's map is the concept's own size (no upsampling), hence
    # IoU = 103 / 121 = 0.851 (the "about 0.85" of the issue).
    n = 20 * 32 * 32
    assert abs(121 / n - 0.0059) < 1e-4
    above = n - 1 - int(np.floor(0.995 * (n - 1)))
    assert above == 103
    assert r.label[0] == "rare"
    assert float(r.iou[0, 0]) == pytest.approx(103 / 121, abs=1e-6)
    assert float(r.thresholds[0]) == pytest.approx(np.percentile(images[:, 0].numpy(), 99.5), rel=1e-6)
    # constant everywhere (threshold = the constant: nothing exceeds it) and silent units detect nothing
    assert r.label[1] is None and r.label[2] is None
    assert float(r.best_iou[1]) == 0 and float(r.best_iou[2]) == 0
    assert (r.detectors, r.unique_concepts) == (1, 1)
    assert r.map_size == (32, 32) and r.mask_size == (32, 32)


def _bilinear_np(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[h, w]`` -> ``size``: bilinear with half-pixel centres, negative source coordinates clamped to 0
    (PyTorch's ``align_corners=False``), written out per axis."""

    def weights(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        w = src - i0
        m = np.zeros((n_out, n_in))
        m[np.arange(n_out), i0] += 1 - w
        m[np.arange(n_out), i1] += w
        return m

    return weights(a.shape[0], size[0]) @ a @ weights(a.shape[1], size[1]).T


def _random_fixture(seed=1):
    torch.manual_seed(seed)
    net = nn.Sequential(
        OrderedDict(
            features=nn.Sequential(
                OrderedDict(
                    conv1=nn.Conv2d(3, 6, 3, stride=2),
                    relu1=nn.ReLU(),
                    conv2=nn.Conv2d(6, 5, 3),
                    relu2=nn.ReLU(),
                )
            )
        )
    ).eval()
    images = torch.randn(9, 3, 19, 19)
    # blob-like masks at 12 x 12: thresholded smooth noise, 4 concepts
    noise = torch.nn.functional.avg_pool2d(torch.randn(9, 4, 16, 16), 5, stride=1)
    masks = noise > noise.flatten(2).quantile(0.8, dim=2)[..., None, None]
    return net, images, masks


def _brute_force(net, images, masks, layer_module, thresholds=None, q=0.005):
    acts = []
    h = layer_module.register_forward_hook(lambda m, i, o: acts.append(o.detach().numpy()))
    with torch.no_grad():
        net(images)
    h.remove()
    A = acts[0]  # [N, U, h, w]
    N, U = A.shape[:2]
    if thresholds is None:
        thresholds = np.array([np.percentile(A[:, u], 100 * (1 - q)) for u in range(U)])
    L = masks.numpy()
    K = L.shape[1]
    inter, union = np.zeros((U, K)), np.zeros((U, K))
    for u in range(U):
        for i in range(N):
            M = _bilinear_np(A[i, u].astype(np.float64), L.shape[-2:]) > thresholds[u]
            for c in range(K):
                inter[u, c] += (M & L[i, c]).sum()
                union[u, c] += (M | L[i, c]).sum()
    return thresholds, np.where(union > 0, inter / np.maximum(union, 1), 0), A


@pytest.mark.parametrize("cache_bytes", [1 << 30, 0, 30_000], ids=["exact", "histogram", "cache-overflows"])
def test_thresholds_and_iou_match_a_numpy_brute_force(cache_bytes):
    net, images, masks = _random_fixture()
    concepts = ["a", "b", "c", "d"]
    res = dissect(
        net, TensorDataset(images, masks), ["conv1", "features.relu2"], concepts, batch_size=4, cache_bytes=cache_bytes
    )
    assert set(res) == {"conv1", "conv2"}  # canonical names, whichever spelling was asked for
    for name, module in (("conv1", net.features.relu1), ("conv2", net.features.relu2)):
        r = res[name]
        T_np, _, A = _brute_force(net, images, masks, module)
        T = r.thresholds.numpy().astype(np.float64)
        if cache_bytes == 1 << 30:  # everything cached: exact
            np.testing.assert_allclose(T, T_np, rtol=1e-5, atol=1e-6)
            assert float(r.threshold_error.max()) == 0
        else:  # the histogram path: within its stated bound, half a bin
            err = r.threshold_error.numpy()
            assert np.all(np.abs(T - T_np) <= err + 1e-6)
            span = A.max(axis=(0, 2, 3)) - A.min(axis=(0, 2, 3))
            np.testing.assert_allclose(err, span / 2048 / 2, rtol=1e-5)
        # IoUs re-derived with the thresholds the function used (the exact ones above, or the histogram's)
        _, iou_np, _ = _brute_force(net, images, masks, module, thresholds=T)
        np.testing.assert_allclose(r.iou.numpy(), iou_np, atol=1e-6)
        best = iou_np.max(1)
        assert r.detectors == int((best > 0.04).sum())
        assert [lab for lab in r.label if lab] == [
            concepts[int(np.argmax(iou_np[u]))] for u in np.flatnonzero(best > 0.04)
        ]


def test_exact_thresholds_equal_numpy_percentile():
    v = torch.randn(7, 1001, generator=torch.Generator().manual_seed(3)).exp()
    np.testing.assert_allclose(exact_thresholds(v, 0.005).numpy(), np.percentile(v.numpy(), 99.5, axis=1), rtol=1e-6)


def test_histogram_quantile_error_within_its_stated_bound():
    """Heavy-tailed, ReLU-like data (most values 0), fed in uneven batches: every unit's estimate lies within
    its stated bound (half a bin of the unit's range) of the exact percentile."""
    g = torch.Generator().manual_seed(4)
    acts = torch.relu(torch.randn(300, 8, 5, 5, generator=g)) ** 3 * torch.arange(1, 9).float()[None, :, None, None]
    low, high = acts.transpose(0, 1).flatten(1).aminmax(dim=1)
    hist = HistogramQuantile(low, high, bins=512)
    for chunk in acts.split(37):
        hist.update(chunk)
    T, err = hist.thresholds(0.005)
    exact = np.percentile(acts.transpose(0, 1).flatten(1).numpy(), 99.5, axis=1)
    assert np.all(np.abs(T.numpy() - exact) <= err.numpy() * (1 + 1e-5) + 1e-6)
    np.testing.assert_allclose(err.numpy(), ((high - low) / 512 / 2).numpy(), rtol=1e-5)  # half a bin
    assert err.max() > 0  # the bound is a real one, not the exact path


def test_label_maps_give_the_same_result_as_boolean_masks():
    """Integer label maps (one per concept here, value k + 1 where concept k is) against the boolean stack."""
    net, images, masks = _random_fixture()
    labels = (masks.long() * torch.arange(1, 5)[None, :, None, None]).to(torch.int64)
    a = dissect(net, TensorDataset(images, masks), ["conv1"], list("abcd"))["conv1"]
    b = dissect(net, TensorDataset(images, labels), ["conv1"], list("abcd"))["conv1"]
    torch.testing.assert_close(a.iou, b.iou)


def test_a_layer_without_spatial_maps_is_refused_by_name():
    net = nn.Sequential(OrderedDict(features=nn.Sequential(OrderedDict(conv1=nn.Conv2d(3, 2, 1))), flat=nn.Flatten()))
    data = TensorDataset(torch.randn(2, 3, 4, 4), torch.zeros(2, 1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="flat gives .* spatial maps"):
        dissect(net, data, ["flat"], ["a"])
