"""Correspondence analysis (Zeiler & Fergus 2014, Sec. 4.3, Fig. 8, Table 1).

Question: does the network implicitly know that "the left eye" of one dog corresponds to "the left eye"
of another? Occlude the same part in several images and compare how the features change: if the change
vectors eps_i = x_i - x~_i (features of original minus occluded, at layer l) point the same way, their
sign patterns agree. The paper's score is

    Delta_l = sum_{i != j} H(sign(eps_i), sign(eps_j)),   H = Hamming distance,

compared with occluding randomly placed regions of the same size (lower = more consistent).

Normalization (the paper's values, ~0.07-0.11, are evidently normalized but the paper does not say how):
we divide by the number of ordered pairs N(N - 1) and by the feature dimension D, i.e. Delta is the mean,
over pairs, of the *fraction* of features whose change has a different sign, in [0, 1]. ``sign`` has three
values (-1, 0, +1): a feature that does not change (e.g. a unit that stays rectified to 0) agrees with
another unchanged one, so sparse layers (conv5) score low. Random sign vectors give 0.5 (two values) or
2/3 (three values equally likely).

Table 1 protocol as implemented: for ``repeats`` rounds, draw ``subset_size`` images (5 in the paper)
without replacement; Delta of each named part over that subset; and Delta of fresh random squares (one
per image, same side as the part squares) over the same subset. Report mean and sample std over rounds.
The core, :func:`sign_hamming_delta`, is a pure function of change vectors, so it is tested on synthetic
data.

Part masks: squares of side ``size`` centred on a keypoint. The ``shapes`` dataset's JSON sidecars give
``keypoints`` as ``[x, y]`` pixels (e.g. a star's ``tip0``..``tip4``, an arrow's ``tip``/``tail``);
:func:`keypoint_masks` turns them into masks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..utils.tensors import eval_mode
from .layers import capture_activations

# ----------------------------------------------------------------------------------------- the pure core


def pairwise_sign_hamming(eps: Tensor) -> Tensor:
    """[N, D] change vectors -> [N, N] Hamming distances between their sign vectors (counts)."""
    s = torch.sign(eps.flatten(1))
    d = s.shape[1]
    agree = torch.zeros(s.shape[0], s.shape[0], dtype=torch.float64, device=s.device)
    for v in (-1, 0, 1):  # equal signs = same one-hot; agreements by one matmul per sign value
        onehot = (s == v).double()
        agree += onehot @ onehot.T
    return d - agree


def sign_hamming_delta(eps: Tensor) -> Tensor:
    """Delta in [0, 1]: mean over ordered pairs i != j of Hamming(sign eps_i, sign eps_j) / D."""
    n, d = eps.shape[0], eps.flatten(1).shape[1]
    if n < 2:
        raise ValueError("Delta needs at least two change vectors")
    h = pairwise_sign_hamming(eps)
    return h.sum() / (n * (n - 1) * d)  # the diagonal is 0


# ----------------------------------------------------------------------------------------- masks


def square_masks(points: Tensor, size: int, image_size: tuple[int, int]) -> Tensor:
    """Squares of side ``size`` centred on ``points`` [N, 2] given as (x, y) pixels (the sidecar
    convention), clipped to the image: BoolTensor [N, H, W]."""
    h, w = image_size
    pts = torch.as_tensor(points, dtype=torch.float64).reshape(-1, 2)
    x0 = torch.round(pts[:, 0] - size / 2).long()
    y0 = torch.round(pts[:, 1] - size / 2).long()
    ys, xs = torch.arange(h), torch.arange(w)
    in_y = (ys[None] >= y0[:, None]) & (ys[None] < y0[:, None] + size)
    in_x = (xs[None] >= x0[:, None]) & (xs[None] < x0[:, None] + size)
    return in_y[:, :, None] & in_x[:, None, :]


def keypoint_masks(
    annotations: Sequence[Mapping], part: str, size: int, image_size: tuple[int, int], scale: float = 1.0
) -> Tensor:
    """Masks around ``annotation["keypoints"][part]`` for each annotation (``scale`` maps annotation
    pixels to model-input pixels, e.g. after a resize)."""
    pts = []
    for i, ann in enumerate(annotations):
        kps = ann.get("keypoints", {})
        if part not in kps:
            raise KeyError(f"annotation {i} ({ann.get('class', '?')}) has no keypoint {part!r}: {sorted(kps)}")
        pts.append([kps[part][0] * scale, kps[part][1] * scale])
    return square_masks(torch.tensor(pts), size, image_size)


def random_square_masks(
    n: int,
    size: int,
    image_size: tuple[int, int],
    generator: torch.Generator | None = None,
    within: Tensor | None = None,
) -> Tensor:
    """``n`` squares of side ``size`` fully inside the image; with ``within`` [n, H, W] (object masks) the
    centre is drawn uniformly among that image's mask pixels (then shifted to fit), as the paper's
    "random object regions"."""
    h, w = image_size
    if size > min(h, w):
        raise ValueError(f"square of side {size} does not fit in {h}x{w}")
    centres = torch.empty(n, 2)
    for i in range(n):
        if within is not None and within[i].any():
            ys, xs = torch.nonzero(within[i].bool(), as_tuple=True)
            k = int(torch.randint(len(ys), (1,), generator=generator))
            cy, cx = float(ys[k]), float(xs[k])
        else:
            cy = float(torch.randint(h - size + 1, (1,), generator=generator)) + size / 2
            cx = float(torch.randint(w - size + 1, (1,), generator=generator)) + size / 2
        cy = min(max(cy, size / 2), h - size / 2)
        cx = min(max(cx, size / 2), w - size / 2)
        centres[i] = torch.tensor([cx, cy])
    return square_masks(centres, size, image_size)


# ----------------------------------------------------------------------------------------- model side


def _features(model: nn.Module, images: Tensor, layers: Sequence[str], batch_size: int) -> dict[str, Tensor]:
    out: dict[str, list[Tensor]] = {k: [] for k in layers}
    for s in range(0, images.shape[0], batch_size):
        with capture_activations(model, layers) as store:
            model(images[s : s + batch_size])
        for k in layers:
            out[k].append(store[k].flatten(1).clone())
    return {k: torch.cat(v) for k, v in out.items()}


def feature_changes(
    model: nn.Module,
    images: Tensor,
    masks: Tensor,
    layers: Sequence[str] = ("conv5", "fc7"),
    fill: float = 0.0,
    batch_size: int = 64,
    clean: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """eps = features(image) - features(image with ``masks`` [N,H,W] set to ``fill``), per layer [N, D].
    ``fill`` 0.0 is grey (the mean) in normalized space. ``clean`` reuses precomputed clean features."""
    with eval_mode(model), torch.no_grad():
        if clean is None:
            clean = _features(model, images, layers, batch_size)
        occluded = torch.where(masks.to(images.device).bool()[:, None], torch.as_tensor(fill).to(images), images)
        occ = _features(model, occluded, layers, batch_size)
    return {k: clean[k] - occ[k] for k in layers}


def correspondence_table(
    model: nn.Module,
    images: Tensor,
    part_masks: Mapping[str, Tensor],
    layers: Sequence[str] = ("conv5", "fc7"),
    random_size: int | None = None,
    object_masks: Tensor | None = None,
    subset_size: int = 5,
    repeats: int = 10,
    fill: float = 0.0,
    seed: int = 0,
    batch_size: int = 64,
) -> list[dict]:
    """Table 1 rows ``{region, layer, mean, std, repeats, subset_size}`` for each part and ``"random"``.

    ``part_masks[name]`` is [N, H, W] (one mask per image). Random squares have side ``random_size``
    (default: the mean bounding-box side of the first part's masks) and are placed inside
    ``object_masks`` when given. With ``N == subset_size`` every round uses all images, so the part rows
    have zero spread and only the random row varies.
    """
    n = images.shape[0]
    if not 2 <= subset_size <= n:
        raise ValueError(f"subset_size={subset_size} must be between 2 and the number of images ({n})")
    if random_size is None:
        first = next(iter(part_masks.values())).bool()
        sides = [max(int(m.any(1).sum()), int(m.any(0).sum())) for m in first]
        random_size = max(1, round(sum(sides) / len(sides)))
    gen = torch.Generator().manual_seed(seed)
    size = tuple(images.shape[-2:])
    with eval_mode(model), torch.no_grad():
        clean = _features(model, images, layers, batch_size)
        part_eps = {
            name: feature_changes(model, images, m, layers, fill, batch_size, clean) for name, m in part_masks.items()
        }
        scores: dict[tuple[str, str], list[float]] = {}
        for _ in range(repeats):
            subset = torch.randperm(n, generator=gen)[:subset_size].sort().values
            for name, eps in part_eps.items():
                for k in layers:
                    scores.setdefault((name, k), []).append(float(sign_hamming_delta(eps[k][subset])))
            within = None if object_masks is None else object_masks[subset]
            rand = random_square_masks(subset_size, random_size, size, gen, within)
            sub_clean = {k: clean[k][subset] for k in layers}
            eps = feature_changes(model, images[subset], rand, layers, fill, batch_size, sub_clean)
            for k in layers:
                scores.setdefault(("random", k), []).append(float(sign_hamming_delta(eps[k])))
    rows = []
    for (region, k), vals in scores.items():
        t = torch.tensor(vals, dtype=torch.float64)
        rows.append(
            {
                "region": region,
                "layer": k,
                "mean": float(t.mean()),
                "std": float(t.std()) if len(vals) > 1 else 0.0,
                "repeats": len(vals),
                "subset_size": subset_size,
            }
        )
    return rows


__all__ = [
    "correspondence_table",
    "feature_changes",
    "keypoint_masks",
    "pairwise_sign_hamming",
    "random_square_masks",
    "sign_hamming_delta",
    "square_masks",
]
