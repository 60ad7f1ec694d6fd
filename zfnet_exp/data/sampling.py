"""Class-balanced sampling: every block of ``num_classes * k`` consecutive indices holds k images of each class.

Why: at the start of training a plain (BatchNorm-free) ReLU network's features are non-negative with a large
common mean. When a minibatch holds, say, 2 instead of 3.2 images of a class, the gradient of that class's
fc8 row is dominated by this common mean, the rows turn into +-(mean feature vector), the logits into
+-||features|| with random sign, and the cheapest way to lower the loss is to shrink every activation: the
ReLUs die within ~10 steps and the network sits at chance for hundreds of steps (measured on ZFNet, with
SGD and Adam alike). With exactly balanced batches the class-count term cancels, and only class-specific
feature differences reach the head.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class ClassBalancedSampler(Sampler[int]):
    """An epoch's indices in which each consecutive block of ``len(classes)`` indices has one image of every
    class (the class order inside each block and the images drawn per class reshuffled each epoch). Every
    class contributes as many images as the *smallest* class has: the epoch length is
    ``num_classes * min images per class``, and a larger class shows a different random subset each epoch
    (nothing is repeated within an epoch)."""

    def __init__(self, targets: Sequence[int], seed: int = 0):
        self.targets = torch.as_tensor(list(targets))
        self.classes = torch.unique(self.targets)
        self.by_class = [torch.nonzero(self.targets == c).flatten() for c in self.classes]
        self.per_class = min(len(ix) for ix in self.by_class)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_class * len(self.by_class)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        columns = [ix[torch.randperm(len(ix), generator=g)][: self.per_class] for ix in self.by_class]
        table = torch.stack(columns, 1)  # [per_class, num_classes]: row r = one image of every class
        order = torch.argsort(torch.rand(table.shape, generator=g), dim=1)  # shuffle classes within each row
        return iter(torch.gather(table, 1, order).flatten().tolist())
