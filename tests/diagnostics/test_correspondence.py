"""Correspondence analysis (Table 1): the Delta core on synthetic change vectors with known sign agreement,
mask helpers against the shapes sidecars, and an end-to-end table on rendered shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zfnet_exp.data.shapes import SHAPE_CLASSES, ShapesSpec, render
from zfnet_exp.diagnostics.correspondence import (
    correspondence_table,
    feature_changes,
    keypoint_masks,
    pairwise_sign_hamming,
    random_square_masks,
    sign_hamming_delta,
    square_masks,
)


def test_delta_hand_example():
    # signs: s1 = [+,+,-,0], s2 = [+,-,-,0], s3 = [-,-,+,+]; H12 = 1, H13 = 4, H23 = 3
    eps = torch.tensor([[0.5, 2.0, -1.0, 0.0], [3.0, -0.1, -2.0, 0.0], [-1.0, -1.0, 4.0, 0.2]])
    h = pairwise_sign_hamming(eps)
    assert h.tolist() == [[0, 1, 4], [1, 0, 3], [4, 3, 0]]
    # ordered pairs: 2 * (1 + 4 + 3) = 16, over 3 * 2 pairs and D = 4 features
    assert abs(float(sign_hamming_delta(eps)) - 16 / 24) < 1e-12


def test_delta_extremes_and_invariances():
    torch.manual_seed(0)
    base = torch.randn(1, 1000)
    same = base.repeat(5, 1) * torch.rand(5, 1).add(0.1)  # positive rescaling keeps every sign
    assert float(sign_hamming_delta(same)) == 0.0
    assert float(sign_hamming_delta(torch.cat([base, -base]))) == 1.0
    iid = torch.randn(6, 200_000)  # two equally likely signs -> disagreement 1/2
    assert abs(float(sign_hamming_delta(iid)) - 0.5) < 0.005
    three = torch.randint(-1, 2, (6, 200_000)).float()  # three equally likely values -> 2/3
    assert abs(float(sign_hamming_delta(three)) - 2 / 3) < 0.005
    # flattening: [N, C, H, W] change maps count like [N, C*H*W]
    maps = torch.randn(4, 3, 5, 5)
    assert float(sign_hamming_delta(maps)) == float(sign_hamming_delta(maps.flatten(1)))
    with pytest.raises(ValueError):
        sign_hamming_delta(base)


def test_known_agreement_fraction():
    """k of D features flip sign between the two halves of the set, the rest agree."""
    n, d, k = 4, 100, 30
    eps = torch.ones(n, d)
    eps[2:, :k] = -1  # images 2, 3 disagree with 0, 1 on k features
    # ordered pairs that disagree: (0,2),(0,3),(1,2),(1,3) and reverses = 8 of 12, each k/d
    assert abs(float(sign_hamming_delta(eps)) - 8 * k / (12 * d)) < 1e-12


def test_masks():
    m = square_masks(torch.tensor([[10.0, 20.0]]), 6, (32, 40))  # (x, y)
    ys, xs = torch.nonzero(m[0], as_tuple=True)
    assert m.shape == (1, 32, 40) and int(m.sum()) == 36
    assert (int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())) == (17, 22, 7, 12)
    clipped = square_masks(torch.tensor([[0.0, 0.0]]), 6, (32, 40))
    assert int(clipped.sum()) == 9  # clipped at the corner
    gen = torch.Generator().manual_seed(0)
    obj = torch.zeros(8, 32, 40, dtype=torch.bool)
    obj[:, 5:9, 30:34] = True
    r = random_square_masks(8, 6, (32, 40), gen, within=obj)
    assert torch.all(r.flatten(1).sum(1) == 36)  # shifted to fit: never clipped
    centres_hit = (r & obj).flatten(1).any(1)
    assert centres_hit.all()  # drawn on the object
    free = random_square_masks(20, 6, (32, 40), gen)
    assert torch.all(free.flatten(1).sum(1) == 36)
    with pytest.raises(ValueError):
        random_square_masks(1, 50, (32, 40))


def render_arrows(n: int, size: int = 48):
    spec = ShapesSpec(image_size=size)
    images, anns, masks = [], [], []
    for i in range(n):
        img, mask, ann = render(spec, SHAPE_CLASSES.index("arrow"), np.random.default_rng(i))
        images.append(torch.tensor(np.array(img), dtype=torch.float32).permute(2, 0, 1) / 127.5 - 1)
        masks.append(torch.tensor(np.array(mask) > 0))
        anns.append(ann)
    return torch.stack(images), anns, torch.stack(masks)


def test_keypoint_masks_sit_on_the_keypoints():
    _, anns, _ = render_arrows(3)
    m = keypoint_masks(anns, "tip", 8, (48, 48))
    for i, ann in enumerate(anns):
        x, y = ann["keypoints"]["tip"]
        assert m[i, min(int(round(y)), 47), min(int(round(x)), 47)]
    with pytest.raises(KeyError, match="no keypoint"):
        keypoint_masks(anns, "nose", 8, (48, 48))


def test_feature_changes_and_table(tiny_model):
    model = tiny_model(size=48, classes=10, widths={1: 8, 2: 16, 3: 16, 4: 16, 5: 16}, fc_units=24)
    images, anns, obj = render_arrows(6)
    nothing = torch.zeros(6, 48, 48, dtype=torch.bool)
    eps = feature_changes(model, images, nothing)
    assert set(eps) == {"conv5", "fc7"} and all(float(e.abs().max()) == 0.0 for e in eps.values())
    parts = {p: keypoint_masks(anns, p, 10, (48, 48)) for p in ("tip", "tail")}
    rows = correspondence_table(model, images, parts, object_masks=obj, subset_size=5, repeats=4, seed=3)
    assert [(r["region"], r["layer"]) for r in rows] == [
        ("tip", "conv5"),
        ("tip", "fc7"),
        ("tail", "conv5"),
        ("tail", "fc7"),
        ("random", "conv5"),
        ("random", "fc7"),
    ]
    for r in rows:
        assert 0.0 <= r["mean"] <= 1.0 and r["std"] >= 0 and r["repeats"] == 4 and r["subset_size"] == 5
    again = correspondence_table(model, images, parts, object_masks=obj, subset_size=5, repeats=4, seed=3)
    assert rows == again  # seeded: reproducible
    full = correspondence_table(model, images, parts, subset_size=6, repeats=2)
    assert full[0]["std"] == 0.0  # every round uses all images
