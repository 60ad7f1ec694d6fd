"""Normalization on the device: batches travel as ``uint8`` and become network inputs only where the model runs.

Why: a float32 image is 4x the bytes of its uint8 pixels, so normalizing in loader workers quadruples the
shared-memory, pinned-memory and host-to-device traffic for no gain; at GPU rates (tens of thousands of
images per second) that traffic, not the model, is the limit. The datamodule applies :class:`Normalizer` in
``on_after_batch_transfer``; everything that reads images straight from a dataset for a diagnostic goes
through :class:`NormalizedView` (or the normalizer itself), so it sees exactly what the network saw.

The normalization *record* (a plain dict, JSON-ready, saved in the datamodule's ``state_dict`` and so in every
checkpoint) is::

    {"normalization": "paper" | "standard",
     "mean": [3] per-channel, or [3][H][W] a per-pixel mean image,   # in [0, 1] units (pixel / 255)
     "std":  [3] or null}                                            # [0, 1] units; only used by "standard"

* ``"paper"``: mean subtraction on the raw 0..255 scale, ``x - 255 * mean`` (inputs roughly in [-128, 128],
  as in the paper, which its N(0, 0.01^2) init and LRN constants assume);
* ``"standard"``: ``(x / 255 - mean) / std`` (unit-variance inputs, the modern choice).

Means are in [0, 1] units because that is what ``channel_stats``, torchvision's ImageNet constants and every
existing config use. The arithmetic is torchvision's ``ToTensor`` + ``Normalize`` step for step (divide by
255, subtract, divide), so the result equals the old float pipeline bit for bit on the CPU.

A per-pixel mean image larger than the input (the paper's 256x256 mean under 224 crops) is centre-cropped
to the input size: the same mean patch is subtracted from every crop, not the patch under the crop's own
position. The mean image of a natural-image dataset is smooth, so the two differ by a tiny amount; keeping
the crop position would force normalization back into the CPU workers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

NORMALIZATIONS = ("paper", "standard")


def _center_crop(t: Tensor, h: int, w: int) -> Tensor:
    H, W = t.shape[-2:]
    if (H, W) == (h, w) or (H, W) == (1, 1):
        return t
    if H < h or W < w:
        raise ValueError(f"the per-pixel mean image is {H}x{W} but the input is {h}x{w}; it must be at least as large")
    top, left = (H - h) // 2, (W - w) // 2
    return t[..., top : top + h, left : left + w]


class Normalizer(nn.Module):
    """uint8 (or float in 0..255) ``[B,3,H,W]`` or ``[3,H,W]`` -> normalized float, on the input's device.

    ``mean`` is per-channel ``[3]`` or a per-pixel mean image ``[3,H,W]``; both in [0, 1] units.
    ``std`` is ``[3]`` (required for ``"standard"``, ignored by ``"paper"``). ``channels_last=True`` returns
    4-D outputs in channels-last memory format (what a channels-last model wants; no copy later).
    """

    def __init__(
        self,
        mean: Any,
        std: Any = None,
        normalization: str = "standard",
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
    ):
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {normalization!r}; choose one of {', '.join(NORMALIZATIONS)}")
        mean_t = torch.as_tensor(mean, dtype=torch.float32)
        if mean_t.ndim == 1:
            mean_t = mean_t.view(3, 1, 1)
        if mean_t.ndim != 3 or mean_t.shape[0] != 3:
            raise ValueError(f"mean must be [3] or [3, H, W], got shape {tuple(mean_t.shape)}")
        if normalization == "standard":
            if std is None:
                raise ValueError("normalization='standard' needs a std")
            std_t = torch.as_tensor(std, dtype=torch.float32).reshape(3, 1, 1)
        else:  # as T.Normalize(mean, [1/255]*3): dividing by 1/255 multiplies back to the 0..255 scale
            std_t = torch.full((3, 1, 1), 1 / 255.0)
        self.normalization = normalization
        self.dtype = dtype
        self.channels_last = channels_last
        self._std_record = None if std is None else [float(v) for v in torch.as_tensor(std).flatten()]
        self.register_buffer("mean", mean_t, persistent=False)
        self.register_buffer("std", std_t, persistent=False)

    @property
    def per_pixel(self) -> bool:
        return self.mean.shape[-1] > 1 or self.mean.shape[-2] > 1

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean = _center_crop(self.mean, x.shape[-2], x.shape[-1]).to(x.device)
        return mean, self.std.to(x.device)

    def forward(self, x: Tensor) -> Tensor:
        mean, std = self._stats(x)
        out = ((x.to(torch.float32) / 255.0 - mean) / std).to(self.dtype)
        if self.channels_last and out.ndim == 4:
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def denormalize(self, x: Tensor) -> Tensor:
        """Network input ``[..., 3, H, W]`` -> [0, 1] RGB (float, clamped), for figures."""
        mean, std = self._stats(x)
        return (x.float() * std + mean).clamp(0, 1)

    def to_uint8(self, x: Tensor) -> Tensor:
        """Network input -> the uint8 pixels it came from (rounded)."""
        return (self.denormalize(x) * 255).round().to(torch.uint8)

    # -- the record a checkpoint or JSON file carries
    def record(self) -> dict[str, Any]:
        mean = self.mean.flatten().tolist() if not self.per_pixel else self.mean.tolist()
        return {"normalization": self.normalization, "mean": mean, "std": self._std_record}

    @classmethod
    def from_record(cls, record: Mapping[str, Any], **kwargs) -> Normalizer:
        if not record or record.get("mean") is None:
            raise ValueError("the normalization record has no mean")
        return cls(record["mean"], record.get("std"), record.get("normalization", "standard"), **kwargs)

    def extra_repr(self) -> str:
        kind = f"per-pixel {tuple(self.mean.shape[-2:])}" if self.per_pixel else "per-channel"
        return f"normalization={self.normalization}, mean={kind}, channels_last={self.channels_last}"


def denormalizer(source: Normalizer | Mapping[str, Any] | Any | None) -> Callable[[Tensor], Tensor]:
    """Network input -> [0, 1] RGB, from a :class:`Normalizer`, a normalization record (a dict with
    ``mean``/``std``/``normalization``, as checkpoints store it) or a datamodule with a ``normalizer``.
    Without any (``None``, or a datamodule lacking one): min-max scaling per call."""
    norm = getattr(source, "normalizer", source)
    if isinstance(norm, Mapping):
        norm = Normalizer.from_record(norm) if norm.get("mean") is not None else None
    if isinstance(norm, Normalizer):
        return norm.denormalize
    return lambda x: (x - x.amin()) / (x.amax() - x.amin()).clamp(min=1e-8)


class NormalizedView(Dataset):
    """A dataset of ``(uint8 image, label, index, ...)`` items seen as ``(normalized float image, ...)``, for
    diagnostics that read images straight from ``train_set``/``val_set`` rather than through the loader
    (which normalizes on the device). Other attributes (``classes``, ``samples``, ``targets``,
    ``annotation``...) are the wrapped dataset's."""

    def __init__(self, dataset: Dataset, normalizer: Normalizer):
        self.dataset = dataset
        self.normalizer = normalizer

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, *rest = self.dataset[index]
        return (self.normalizer(image), *rest)

    def __getattr__(self, name: str):
        if name in ("dataset", "normalizer"):  # not set yet (unpickling): avoid recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


def normalized_split(datamodule: Any, split: str = "val") -> Dataset | None:
    """``datamodule.<split>_set`` as the network sees it: wrapped in :class:`NormalizedView` when the
    datamodule normalizes on the device (has a ``normalizer``); as is otherwise (datasets of floats)."""
    dataset = getattr(datamodule, f"{split}_set", None)
    norm = getattr(datamodule, "normalizer", None)
    if dataset is None or norm is None:
        return dataset
    return NormalizedView(dataset, norm)


__all__ = ["NORMALIZATIONS", "NormalizedView", "Normalizer", "denormalizer", "normalized_split"]
