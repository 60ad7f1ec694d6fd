"""Top-k activating images per feature map (the paper's top-9 grids, Fig. 2; Fig. 4 uses k=1).

Protocol (``shared/reference/visualization-anchors.md`` Sec. 4):

* **Ranking key**: a channel's *spatial maximum* in an image (NetDissect's key). The unit where it is
  reached is recorded as ``positions`` so the deconvnet can project exactly that unit
  (``deconvnet.project(..., positions=...)``) and the receptive-field patch can be cut around it.
* **At most one entry per image per channel.** The paper does not say whether two of the nine may come
  from one image; allowing it fills grids with near-duplicate neighbours of one strong blob, so we choose
  one per image, explicitly. The same dataset index seen twice (DDP samplers pad shards by repeating
  samples) also counts once.
* **Deterministic ties**: higher value first; equal values -> lower dataset index first; inside one map,
  equal maxima -> the first in row-major order (smallest y, then x). A result therefore depends only on
  the set of (index, image) pairs seen, not on batch order, batch size or how the data was sharded.
* **Streaming**: a running ``[C, k]`` buffer per layer is merged with each batch's per-image maxima, so
  memory does not grow with the dataset. :class:`TopKAccumulator` is that buffer, usable from forward
  hooks during validation; shards of several ranks merge exactly (``merge`` / ``merge_gathered``).

Empty slots (fewer than k images seen) have ``index = -1``, ``value = -inf`` and ``position = (-1, -1)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from ..utils.loaders import make_loader
from ..utils.tensors import argmax_yx, eval_mode
from .geometry import run_until
from .layers import capture_activations, resolve_layer

_NO_INDEX = torch.iinfo(torch.long).max  # sorts empty slots after every real dataset index


@dataclass
class TopK:
    """The k strongest images of every channel of one layer (see the module docstring for the rules)."""

    values: torch.Tensor  # [C, k] float, descending
    indices: torch.Tensor  # [C, k] long dataset indices, -1 = empty slot
    positions: torch.Tensor  # [C, k, 2] long (y, x) of the maximum in the layer's map, -1 = empty slot

    @property
    def k(self) -> int:
        return self.values.shape[1]

    def to(self, device) -> TopK:
        return TopK(self.values.to(device), self.indices.to(device), self.positions.to(device))


def _empty(c: int, k: int, dtype: torch.dtype, device) -> TopK:
    return TopK(
        torch.full((c, k), float("-inf"), dtype=dtype, device=device),
        torch.full((c, k), -1, dtype=torch.long, device=device),
        torch.full((c, k, 2), -1, dtype=torch.long, device=device),
    )


def select_topk(values: torch.Tensor, indices: torch.Tensor, positions: torch.Tensor, k: int) -> TopK:
    """Reduce candidates ``[C, N]`` (values, dataset indices, positions ``[C, N, 2]``) to a :class:`TopK`.

    Applies every rule of the module docstring: one entry per dataset index (its highest value, then its
    first position), ordering by (value descending, index ascending), empty slots last. A stable sort on
    each key in turn gives the lexicographic order without relying on ``torch.topk``'s unspecified tie order.
    """
    c, n = values.shape
    valid = indices >= 0
    idx = torch.where(valid, indices, torch.full_like(indices, _NO_INDEX))
    val = torch.where(valid, values, torch.full_like(values, float("-inf")))

    def reorder(order: torch.Tensor):
        nonlocal idx, val, positions, valid
        idx, val, valid = idx.gather(1, order), val.gather(1, order), valid.gather(1, order)
        positions = positions.gather(1, order.unsqueeze(-1).expand(-1, -1, 2))

    # 1) one entry per index: sort by (index asc, value desc, position asc) and drop repeats of an index
    flatpos = positions[..., 0] * (1 << 31) + positions[..., 1]
    reorder(flatpos.argsort(dim=1, stable=True))
    reorder(val.argsort(dim=1, descending=True, stable=True))
    reorder(idx.argsort(dim=1, stable=True))
    repeat = torch.zeros_like(valid)
    repeat[:, 1:] = (idx[:, 1:] == idx[:, :-1]) & valid[:, 1:]
    valid = valid & ~repeat
    idx = torch.where(valid, idx, torch.full_like(idx, _NO_INDEX))
    val = torch.where(valid, val, torch.full_like(val, float("-inf")))
    # 2) final order: value desc, ties -> index asc (the array is already index-sorted; sort stays stable)
    reorder(val.argsort(dim=1, descending=True, stable=True))
    out = _empty(c, k, values.dtype, values.device)
    m = min(k, n)
    keep = valid[:, :m]
    out.values[:, :m] = torch.where(keep, val[:, :m], out.values[:, :m])
    out.indices[:, :m] = torch.where(keep, idx[:, :m], out.indices[:, :m])
    out.positions[:, :m] = torch.where(keep.unsqueeze(-1), positions[:, :m], out.positions[:, :m])
    return out


def image_maxima(acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and channel: the spatial maximum ``[B, C]`` and where it is ``[B, C, 2]`` (first in
    row-major order). ``[B, C]`` activations (FC layers) are their own maximum at (0, 0)."""
    if acts.dim() == 2:
        acts = acts[:, :, None, None]
    if acts.dim() != 4:
        raise ValueError(f"activations must be [B, C, H, W] or [B, C]; got {tuple(acts.shape)}")
    return acts.flatten(2).amax(2), argmax_yx(acts)


class TopKAccumulator:
    """Streaming top-k over batches, per layer; shards (DDP ranks, data chunks) merge exactly.

    ``update(acts_by_layer, dataset_indices)`` takes each layer's activations ``[B, C, H, W]`` and the
    dataset indices ``[B]`` of the batch rows. ``merge(other)`` folds another accumulator in;
    ``state()`` / ``merge_gathered(state)`` do the same for tensors gathered across ranks with a leading
    rank dimension (``LightningModule.all_gather`` output). ``result()`` returns ``{layer: TopK}``.
    A rank that saw no batch has no buffer; give ``channels={layer: C}`` so every rank can gather.
    """

    def __init__(self, layers: Sequence[str], k: int = 9, channels: Mapping[str, int] | None = None):
        if k < 1:
            raise ValueError(f"k must be >= 1; got {k}")
        self.layers = list(layers)
        self.k = k
        self.buffers: dict[str, TopK] = {}
        for layer, c in (channels or {}).items():
            self.buffers[layer] = _empty(int(c), k, torch.float32, None)

    def _fold(self, layer: str, values: torch.Tensor, indices: torch.Tensor, positions: torch.Tensor) -> None:
        """Merge candidates ``[C, N]`` into the buffer of ``layer``."""
        buf = self.buffers.get(layer)
        if buf is not None:
            if buf.values.shape[0] != values.shape[0]:
                raise ValueError(f"{layer}: {values.shape[0]} channels, but the buffer has {buf.values.shape[0]}")
            buf = buf.to(values.device)
            values = torch.cat([buf.values.to(values.dtype), values], 1)
            indices = torch.cat([buf.indices, indices], 1)
            positions = torch.cat([buf.positions, positions], 1)
        self.buffers[layer] = select_topk(values, indices, positions, self.k)

    @torch.no_grad()
    def update(self, acts_by_layer: Mapping[str, torch.Tensor], dataset_indices: torch.Tensor | Iterable[int]) -> None:
        for layer in self.layers:
            acts = acts_by_layer[layer].detach()
            idx = torch.as_tensor(dataset_indices, dtype=torch.long, device=acts.device).reshape(-1)
            if idx.numel() != acts.shape[0]:
                raise ValueError(f"{layer}: {acts.shape[0]} activation rows but {idx.numel()} dataset indices")
            val, pos = image_maxima(acts)  # [B, C], [B, C, 2]
            c = val.shape[1]
            self._fold(layer, val.t().float(), idx.unsqueeze(0).expand(c, -1), pos.transpose(0, 1))

    def merge(self, other: TopKAccumulator) -> TopKAccumulator:
        """Fold ``other`` into this accumulator (in place; returns self). Equal to one pass over both shards."""
        for layer, buf in other.buffers.items():
            self._fold(layer, buf.values, buf.indices, buf.positions)
        return self

    def state(self) -> dict[str, TopK]:
        """This shard's buffers, to be gathered across ranks."""
        return dict(self.buffers)

    def merge_gathered(self, gathered: Mapping[str, TopK]) -> TopKAccumulator:
        """Fold gathered buffers in: each field has a leading rank dimension (values ``[R, C, k]``, ...)."""
        for layer, g in gathered.items():
            v, i, p = g.values, g.indices, g.positions
            if v.dim() == 3:  # [R, C, k] -> candidates [C, R*k]
                v = v.permute(1, 0, 2).flatten(1)
                i = i.permute(1, 0, 2).flatten(1)
                p = p.permute(1, 0, 2, 3).flatten(1, 2)
            self._fold(layer, v, i, p)
        return self

    def result(self) -> dict[str, TopK]:
        """``{layer: TopK}`` on the CPU (layers that saw nothing are missing)."""
        return {layer: buf.to("cpu") for layer, buf in self.buffers.items()}


def _split_batch(batch, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, dataset indices) from an (image, label) or (image, label, index) batch."""
    if isinstance(batch, torch.Tensor):
        images, idx = batch, None
    else:
        images = batch[0]
        idx = batch[2] if len(batch) >= 3 else None
    if idx is None:  # no index in the dataset: the position in the (unshuffled) loader order
        idx = torch.arange(offset, offset + images.shape[0])
    return images, torch.as_tensor(idx, dtype=torch.long)


@torch.no_grad()
def mine_topk(
    model: nn.Module,
    dataset: Dataset,
    layers: Sequence[str],
    k: int = 9,
    batch_size: int = 64,
    num_workers: int = 0,
    device: torch.device | str | None = None,
) -> dict[str, TopK]:
    """Scan ``dataset`` once and return ``{layer: TopK}`` (module docstring for the rules).

    The dataset yields ``(image, label)`` or ``(image, label, index)``; without an index, the position in
    the dataset is used. The forward pass stops after the deepest requested layer (no classifier). The
    model runs in eval mode; its mode is restored afterwards.
    """
    if device is None:
        device = next(iter(model.parameters()), torch.empty(0)).device
    device = torch.device(device)
    modules = [resolve_layer(model, layer)[1] for layer in layers]
    acc = TopKAccumulator(layers, k)
    loader = make_loader(dataset, batch_size, num_workers, pin_memory=False)
    offset = 0
    with eval_mode(model), capture_activations(model, layers) as acts:
        for batch in loader:
            images, idx = _split_batch(batch, offset)
            offset += images.shape[0]
            run_until(model, images.to(device, non_blocking=True), modules)
            acc.update(acts, idx.to(device))
    return acc.result()


def topk_payload(topk: TopK, layer: str, maps: Sequence[int]) -> dict:
    """JSON-ready record of ``maps`` of a mined :class:`TopK` (values, dataset indices, positions; an
    empty slot's value -inf becomes null), logged next to every top-9 figure."""
    maps = [int(c) for c in maps]
    return {
        "layer": layer,
        "k": topk.k,
        "maps": maps,
        "values": [[v if math.isfinite(v) else None for v in row] for row in topk.values[maps].tolist()],
        "indices": topk.indices[maps].tolist(),
        "positions": topk.positions[maps].tolist(),
    }


__all__ = ["TopK", "TopKAccumulator", "image_maxima", "mine_topk", "select_topk", "topk_payload"]
