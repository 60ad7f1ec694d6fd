"""The DataLoader of the offline loops (feature extraction, statistics, top-k mining, evaluation, transfer).

Why one builder: these loops read a dataset once, in order (or shuffled for a short fine-tune), with the task's
``batch_size`` and ``num_workers``; pinned memory pays off only when batches go to a GPU. Training loaders are
the datamodules' own (samplers for exact resume, DDP sharding) and are not built here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


def make_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int = 0,
    shuffle: bool = False,
    pin_memory: bool | None = None,
    **kwargs: Any,
) -> DataLoader:
    """``dataset`` in batches of ``batch_size`` (the last one partial), in order unless ``shuffle``. ``pin_memory``
    None: pinned when a GPU is visible. Other keyword arguments go to :class:`~torch.utils.data.DataLoader`."""
    return DataLoader(
        dataset,
        batch_size=int(batch_size),
        shuffle=shuffle,
        num_workers=int(num_workers),
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        **kwargs,
    )
