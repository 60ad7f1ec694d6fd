"""Small tensor and dataset helpers that every diagnostic, callback and analysis shares (one copy each).

Why here: these were copied into whichever module needed them first (five eval-mode guards, three
``_pair``, several hand-written flat-argmax-to-(y, x) conversions, four seeded subsets, two ``Subset``
unwrappers). ``utils`` sits below every other layer, so diagnostics, viz, callbacks and tasks may all import it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode inside the block and restore *each module's* mode afterwards.

    Diagnostics are called from training callbacks too; dropout or batch statistics would make "occlude
    and re-run" or "project this unit" ill-defined, so every diagnostic evaluates the deterministic network.
    Restoring per module (not just ``model.train(was)``) keeps a partly frozen model (a fine-tuning recipe
    with an eval-mode backbone) as it was.
    """
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes.items():
            m.training = mode


def pair(v: int | Sequence[int], name: str | None = None) -> tuple[int, int]:
    """``3 -> (3, 3)``, ``(3, 5) -> (3, 5)`` (module attributes such as ``kernel_size`` come either way).
    With ``name``, a user-facing size: it must be positive, and the error names it."""
    out = (int(v), int(v)) if isinstance(v, int) else tuple(int(a) for a in v)
    if name is not None and (len(out) != 2 or min(out) < 1):
        raise ValueError(f"{name}={v!r}: expected a positive int or a pair of positive ints")
    if len(out) != 2:
        raise ValueError(f"expected an int or a pair, got {v!r}")
    return out  # type: ignore[return-value]


def argmax_yx(maps: Tensor) -> Tensor:
    """``[..., H, W]`` -> ``[..., 2]`` (y, x) of the first maximum in raster order of each map
    (``torch.argmax`` documents returning the first maximal index)."""
    flat = maps.flatten(-2).argmax(-1)
    return torch.stack(torch.unravel_index(flat, maps.shape[-2:]), -1)


def seeded_subset(n: int, k: int, seed: int) -> list[int]:
    """``min(k, n)`` distinct indices of ``range(n)``, sorted, from a private generator seeded with ``seed``:
    identical on every rank, epoch and run (so figures form a time series), and the global RNG is untouched."""
    g = torch.Generator().manual_seed(int(seed))
    return sorted(torch.randperm(n, generator=g)[: min(int(k), n)].tolist())


def pick_maps(num_channels: int, maps: int | str | Sequence[int] | None, seed: int, layer: str = "") -> list[int]:
    """Channels to draw: ``"all"``/None -> all; an int N -> a fixed seeded subset of N (seed offset by the
    layer name, so layers of equal width do not show the same channel numbers); a list -> those channels."""
    if maps is None or maps == "all":
        return list(range(num_channels))
    if isinstance(maps, int):
        return seeded_subset(num_channels, maps, int(seed) + sum(map(ord, layer)))
    return [int(c) for c in maps]


def evenly_spaced(n_total: int, num: int | None) -> list[int]:
    """``num`` evenly spaced positions in ``range(n_total)`` (all when None): every class shows up in a
    class-sorted ImageFolder, and the choice is the same on every run."""
    if num is None or num >= n_total:
        return list(range(n_total))
    return torch.linspace(0, n_total - 1, int(num)).round().long().unique().tolist()


def unwrap_subset(dataset: Dataset) -> Dataset:
    """The dataset under (nested) ``Subset`` wrappers: items carry *its* indices, so lookups go there."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


def class_names_of(dataset, indices: Sequence[int], names: Sequence[str] | None) -> list[str]:
    """The class name of each dataset index, for figure labels ("" for an empty slot (-1), without class
    names, or for a target that is not one class, e.g. VOC's multi-label vectors). Read from the dataset's
    ``samples`` list of ``(path, target)`` where it has one (no image decoded), else from the item."""
    if not names:
        return ["" for _ in indices]
    base = unwrap_subset(dataset)
    samples = getattr(base, "samples", None)
    direct = isinstance(samples, list) and getattr(base, "target_transform", None) is None
    out = []
    for i in indices:
        i = int(i)
        if i < 0:
            out.append("")
            continue
        target = samples[i][1] if direct else base[i][1]
        target = target.item() if isinstance(target, torch.Tensor) and target.numel() == 1 else target
        out.append(names[target] if isinstance(target, int) and 0 <= target < len(names) else "")
    return out


__all__ = [
    "argmax_yx",
    "class_names_of",
    "eval_mode",
    "evenly_spaced",
    "pair",
    "pick_maps",
    "seeded_subset",
    "unwrap_subset",
]
