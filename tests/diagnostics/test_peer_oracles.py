"""Peers' own test fixtures, re-derived by hand, as oracles for our implementations.

- Captum's 4x4 ``Deconvolution`` fixture (``BasicModel_ConvNet_One_Conv``: one 3x3 all-ones conv with biases
  -50/-75, ReLU, an 8->4 linear layer with rows ``[1]*5 + [-1]*3``, ReLU; input ``arange(16)``).
- Captum's occlusion with border-clipped windows (a stride that does not divide ``H - patch``).
- Deletion / insertion AUCs of a linear model, known in closed form.
- Quantus' ``PointingGame`` hit/miss rule, including where our tie and empty-mask rules differ.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from zfnet_exp.diagnostics.deconvnet import project
from zfnet_exp.diagnostics.faithfulness import causal_curve, deletion_auc, pointing_game
from zfnet_exp.diagnostics.occlusion import occlusion_sensitivity


class OneConv(nn.Module):
    """Captum's ``BasicModel_ConvNet_One_Conv`` (its test-suite model), rebuilt from its description."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, 1)
        self.relu1 = nn.ReLU()
        self.fc1 = nn.Linear(8, 4)
        self.relu2 = nn.ReLU()
        with torch.no_grad():
            self.conv1.weight.fill_(1.0)
            self.conv1.bias.copy_(torch.tensor([-50.0, -75.0]))
            self.fc1.weight.copy_(torch.cat([torch.ones(4, 5), -torch.ones(4, 3)], 1))
            self.fc1.bias.zero_()

    def forward(self, x):
        return self.relu2(self.fc1(self.relu1(self.conv1(x)).flatten(1)))


def test_captum_4x4_deconvolution_fixture():
    """Deconvolution from a logit (signal 1.0) of Captum's fixture model, derived by hand:
    relu2 passes 1; fc1^T gives conv map 0 the signal [1, 1, 1, 1] and map 1 [1, -1, -1, -1]; relu1's
    deconvnet rule rectifies the *signal* (whatever the forward sign: most units are negative here, biases
    -50/-75 against window sums 45..81) to [1, 1, 1, 1 | 1, 0, 0, 0]; the transposed all-ones 3x3 conv
    then counts, per input pixel, the covering windows of map 0 plus the one window (0, 0) of map 1:
    [[2,3,3,1],[3,5,5,2],[3,5,5,2],[1,2,2,1]], Captum's expected attribution."""
    model = OneConv().eval()
    x = torch.arange(16.0).view(1, 1, 4, 4)
    expected = torch.tensor([[2.0, 3, 3, 1], [3, 5, 5, 2], [3, 5, 5, 2], [1, 2, 2, 1]])
    for target in range(4):
        got = project(model, x, "relu2", target, from_activation=False, chain_only=False)  # flatten in forward
        torch.testing.assert_close(got[0, 0], expected)
    # the same two pieces as ZF unit projections at relu1: map 0 whole, map 1's unit (0, 0)
    whole = project(model, x, "relu1", 0, unit="map", from_activation=False)[0, 0]
    corner = project(model, x, "relu1", 1, positions=torch.tensor([[0, 0]]), from_activation=False)[0, 0]
    torch.testing.assert_close(whole + corner, expected)


def test_captum_occlusion_with_clipped_border_windows():
    """5x5 image, 2x2 window, stride 2: Captum slides windows at 0, 2 and a border-clipped one at 4 per axis;
    ours keeps the square inside (positions 0, 2). On a linear model the drop of a window is the sum of
    w * x over it (closed form). Inside the region our squares cover, our per-pixel view equals both that
    closed form and Captum; the last row/column only Captum's clipped windows reach (ours: 0)."""
    from captum.attr import Occlusion

    torch.manual_seed(0)
    w = torch.randn(1, 5, 5).double()
    model = nn.Sequential(nn.Flatten(), nn.Linear(25, 2, bias=False)).double().eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([w.flatten(), -w.flatten()]))
    x = torch.rand(1, 5, 5).double() + 0.5
    res = occlusion_sensitivity(model, x, 0, patch=2, stride=2, fill=0.0, layer=None)
    assert res.prob.shape == (2, 2)
    ours = res.per_pixel("logit")
    closed = torch.zeros(5, 5, dtype=torch.float64)
    for py in range(5):
        for px in range(5):
            drops = [
                float((w[0, y : y + 2, xx : xx + 2] * x[0, y : y + 2, xx : xx + 2]).sum())
                for y in (0, 2)
                for xx in (0, 2)
                if y <= py < y + 2 and xx <= px < xx + 2
            ]
            closed[py, px] = sum(drops) / len(drops) if drops else 0.0
    torch.testing.assert_close(ours, closed)
    captum = Occlusion(model).attribute(x[None], sliding_window_shapes=(1, 2, 2), strides=(1, 2, 2), target=0)[0, 0]
    torch.testing.assert_close(ours[:4, :4], captum[:4, :4].double())
    clipped = torch.tensor(
        [float(w[0, r, 4] * x[0, r, 4] + (w[0, r + 1, 4] * x[0, r + 1, 4] if r < 4 else 0)) for r in (0, 2, 4)],
        dtype=torch.float64,
    )
    assert torch.all(ours[:, 4] == 0) and torch.all(ours[4] == 0)
    torch.testing.assert_close(captum[0, 4].double(), clipped[0])  # Captum's clipped window: its one column


def test_linear_model_deletion_and_insertion_aucs_in_closed_form():
    """Logits ``[s, 0]`` with ``s = sum(w * x)``: P(class 0) = sigmoid(s). On a 2x2 all-ones image with
    w = [[4, 2], [1, 0.5]] ranked by w, two pixels go per step (n_steps = H = 2): deletion sees s = 7.5,
    1.5, 0; insertion from a zero substrate s = 0, 6, 7.5; AUC = trapezoid over x = 0, 1/2, 1."""
    w = torch.tensor([[4.0, 2.0], [1.0, 0.5]])

    class Linear(nn.Module):
        def forward(self, x):
            s = (x[:, 0] * w).flatten(1).sum(1, keepdim=True)
            return torch.cat([s, torch.zeros_like(s)], 1)

    def sig(v):
        return 1 / (1 + math.exp(-v))

    def trap(a, b, c):
        return (a / 2 + b + c / 2) / 2

    x, sal = torch.ones(1, 1, 2, 2), w[None]
    auc, curve = deletion_auc(Linear(), x, sal, 0)
    torch.testing.assert_close(curve[0], torch.tensor([sig(7.5), sig(1.5), sig(0.0)], dtype=torch.float64))
    assert float(auc) == pytest.approx(trap(sig(7.5), sig(1.5), sig(0.0)), abs=1e-12)
    ins = causal_curve(Linear(), x, sal, 0, mode="insertion", substrate=torch.zeros_like(x))
    torch.testing.assert_close(ins[0], torch.tensor([sig(0.0), sig(6.0), sig(7.5)], dtype=torch.float64))


def quantus_pointing_hit(a: torch.Tensor, s: torch.Tensor) -> bool:
    """Quantus ``PointingGame`` (unweighted), written from its documented rule: a hit when *any* pixel
    holding the map's maximum lies on the mask (ties count if one of them is on it); empty mask: miss."""
    return bool(s.flatten().bool()[(a.flatten() == a.max()).nonzero().flatten()].any())


@pytest.mark.parametrize(
    "case, ours_hit, quantus_hit",
    [
        ("unique max on the mask", True, True),
        ("unique max off the mask", False, False),
        ("tie: first max off, second on the mask", False, True),
        ("empty mask", False, False),
    ],
)
def test_pointing_game_against_quantus_rule(case, ours_hit, quantus_hit):
    """Our pointing game at tolerance 0 is Quantus' exact-mask variant, except for ties: we take the first
    maximum in raster order (TorchRay's ``argmax``), Quantus accepts any tied maximum. An empty mask is a
    miss for both."""
    a = torch.zeros(6, 6)
    s = torch.zeros(6, 6, dtype=torch.bool)
    s[3:5, 3:5] = True
    if case == "unique max on the mask":
        a[4, 4] = 1
    elif case == "unique max off the mask":
        a[0, 1] = 1
    elif case.startswith("tie"):
        a[0, 1] = a[4, 4] = 1
    else:
        a[4, 4] = 1
        s[:] = False
    assert quantus_pointing_hit(a, s) == quantus_hit
    assert bool(pointing_game(a[None], s[None], tolerance=0)[0]) == ours_hit
