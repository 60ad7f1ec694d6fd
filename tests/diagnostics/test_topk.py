"""topk against a brute-force scan written with plain python loops (spatial max found by scanning the map in
row-major order, candidates ordered by (value desc, index asc), one entry per image), and sharded
accumulation against a single pass."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from zfnet_exp.diagnostics.layers import capture_activations
from zfnet_exp.diagnostics.topk import TopK, TopKAccumulator, mine_topk


class Images(Dataset):
    def __init__(self, images: torch.Tensor, ids: list[int] | None = None):
        self.images, self.ids = images, ids

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if self.ids is None:
            return self.images[i], 0
        return self.images[i], 0, self.ids[i]


def brute_force(acts: np.ndarray, ids: list[int], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, c, h, w = acts.shape
    values = np.full((c, k), -np.inf)
    indices = np.full((c, k), -1)
    positions = np.full((c, k, 2), -1)
    for ch in range(c):
        entries = []
        for i in range(n):
            best, where = -np.inf, None
            for y in range(h):
                for x in range(w):
                    if acts[i, ch, y, x] > best:  # strict: the first maximum in row-major order stays
                        best, where = acts[i, ch, y, x], (y, x)
            entries.append((-best, ids[i], where))
        entries.sort(key=lambda e: (e[0], e[1]))
        for j, (neg, idx, where) in enumerate(entries[:k]):
            values[ch, j], indices[ch, j], positions[ch, j] = -neg, idx, where
    return values, indices, positions


def assert_same(t: TopK, ref) -> None:
    v, i, p = ref
    assert torch.equal(t.indices, torch.as_tensor(i, dtype=torch.long))
    assert torch.equal(t.positions, torch.as_tensor(p, dtype=torch.long))
    assert torch.allclose(t.values.double(), torch.as_tensor(v), rtol=0, atol=0)


def relu_model() -> nn.Module:
    return nn.Sequential(OrderedDict(relu=nn.ReLU()))  # activations = rectified images


def test_matches_bruteforce_with_ties():
    """Integer-valued maps: many equal maxima across images and inside each map."""
    torch.manual_seed(0)
    images = torch.randint(-1, 4, (23, 4, 5, 6)).float()
    ids = list(range(100, 123))[::-1]  # dataset indices that disagree with the loader order
    for k in (1, 9, 30):  # 30 > 23 images: empty slots
        got = mine_topk(relu_model(), Images(images, ids), ["relu"], k=k, batch_size=5)["relu"]
        assert_same(got, brute_force(images.clamp(min=0).numpy(), ids, k))
        assert bool((got.values[:, :-1] >= got.values[:, 1:]).all())


def test_matches_bruteforce_on_zfnet_and_without_index(tiny_model):
    model = tiny_model(classes=10, seed=1).train()  # mine_topk must evaluate it in eval mode and restore train
    images = torch.randn(17, 3, 64, 64)
    layers = ["conv1", "conv3", "features.pool5"]
    got = mine_topk(model, Images(images), layers, k=4, batch_size=6)
    assert model.training  # the caller's mode is restored
    with torch.no_grad(), capture_activations(model.eval(), layers) as acts:
        model(images)
    for layer in layers:
        assert_same(got[layer], brute_force(acts[layer].double().numpy(), list(range(17)), 4))


def test_one_entry_per_image_even_when_repeated():
    """An image seen twice (a DDP sampler pads shards by repeating samples) still counts once."""
    torch.manual_seed(2)
    images = torch.rand(6, 2, 3, 3)
    acc = TopKAccumulator(["relu"], k=4)
    acc.update({"relu": images}, torch.arange(6))
    acc.update({"relu": images[:3]}, torch.arange(3))  # repeats
    got = acc.result()["relu"]
    for c in range(2):
        idx = got.indices[c].tolist()
        assert len(set(idx)) == 4
    assert_same(got, brute_force(images.numpy(), list(range(6)), 4))


def test_shards_merge_to_the_single_pass():
    torch.manual_seed(3)
    images = torch.randint(0, 5, (31, 3, 4, 4)).float()
    single = TopKAccumulator(["relu"], k=9)
    single.update({"relu": images}, torch.arange(31))
    # two DistributedSampler-style shards (interleaved, padded with a repeat), fed in odd batch sizes
    shards = [list(range(0, 31, 2)), list(range(1, 31, 2)) + [0]]
    accs = []
    for shard in shards:
        acc = TopKAccumulator(["relu"], k=9)
        for s in range(0, len(shard), 3):
            ids = torch.tensor(shard[s : s + 3])
            acc.update({"relu": images[ids]}, ids)
        accs.append(acc)
    merged = TopKAccumulator(["relu"], k=9).merge(accs[0]).merge(accs[1]).result()["relu"]
    want = single.result()["relu"]
    assert_same(merged, (want.values.double().numpy(), want.indices.numpy(), want.positions.numpy()))
    # the all_gather path: states stacked along a leading rank dimension
    st = [a.state()["relu"] for a in accs]
    gathered = {
        "relu": TopK(
            torch.stack([s.values for s in st]),
            torch.stack([s.indices for s in st]),
            torch.stack([s.positions for s in st]),
        )
    }
    got = TopKAccumulator(["relu"], k=9, channels={"relu": 3}).merge_gathered(gathered).result()["relu"]
    assert torch.equal(got.indices, want.indices) and torch.equal(got.positions, want.positions)
    assert torch.equal(got.values, want.values)


def test_mine_restores_training_mode():
    model = relu_model().train()
    mine_topk(model, Images(torch.rand(3, 2, 2, 2)), ["relu"], k=2)
    assert model.training
