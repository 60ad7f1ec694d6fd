"""Training-set samplers whose order is a pure function of (seed, epoch): a restarted run replays exactly the
batches an uninterrupted one would have seen, on one process or under DDP.

Two orders, one split:

* ``ShuffleSampler``: a seeded permutation per epoch (what ``shuffle=True`` does, made reproducible).
* ``ClassBalancedSampler``: every block of ``num_classes`` consecutive indices holds one image of each class.
  Why: at the start of training a plain (BatchNorm-free) ReLU network's features are non-negative with a large
  common mean. When a minibatch holds, say, 2 instead of 3.2 images of a class, the gradient of that class's fc8
  row is dominated by this common mean, the rows turn into +-(mean feature vector), the logits into
  +-||features|| with random sign, and the cheapest way to lower the loss is to shrink every activation: the ReLUs
  die within ~10 steps and the network sits at chance for hundreds of steps (measured on ZFNet, with SGD and Adam
  alike). With exactly balanced batches the class-count term cancels, and only class-specific feature
  differences reach the head.

Under DDP the epoch's global order is cut into *global* batches of ``batch_size`` indices and rank r takes the
r-th contiguous slice of each, so the images that make up global batch j are the same on 1 or N processes (the
averaged DDP gradient is the single-process gradient), every rank gets the same number of batches, and with
balanced batches each rank's share is balanced too when ``batch_size / world`` is a multiple of the class
count. (Lightning's ``DistributedSampler`` interleaves indices across ranks instead, which breaks both.)

Why not ``set_epoch`` alone: Lightning creates the first epoch's iterator (and DataLoader workers prefetch
indices) *before* it calls ``set_epoch`` — on a resumed run the first epoch would reuse epoch 0's order. The
sampler therefore starts at the epoch it is built in (``epoch=trainer.current_epoch``). It also owns the
DataLoader's ``generator``, reseeded per epoch, from which PyTorch draws the workers' base seed: worker-side
augmentation is then a function of (seed, epoch) too, instead of the history of the main process's RNG.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DistributedSampler


def derived_seed(seed: int, counter: int, rank: int = 0) -> int:
    """One 62-bit seed per (seed, counter, rank) where the counter is an epoch or a step, decorrelated (a plain
    ``seed + epoch`` makes run A's epoch 1 equal run B's epoch 0 when B's seed is A's + 1)."""
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(counter)) * 1_009 + int(rank))
    return int(torch.randint(0, 2**62, (1,), generator=g))


class _EpochSplitSampler(DistributedSampler):
    """Common part: a global order per epoch (``_global_order``), cut into global batches, sliced per rank.

    Subclasses ``DistributedSampler`` only so that Lightning leaves it in place under DDP (it replaces any other
    sampler by a ``DistributedSamplerWrapper``); it does not use the parent's logic.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int = 0,
        epoch: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        skip_batches: int = 0,
    ):
        if batch_size % num_replicas:
            raise ValueError(f"global batch {batch_size} does not divide by {num_replicas} processes")
        self.num_items = int(num_items)
        self.batch_size = int(batch_size)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.shuffle = True  # read by Lightning's "is the train loader shuffled" check
        self.drop_last = True
        self.generator = torch.Generator()  # give it to the DataLoader: workers' base seed per epoch
        self.set_epoch(epoch)
        # a run resumed from a mid-epoch checkpoint (saved on a preemption signal) continues with the batches that
        # epoch had not seen yet; len() stays the full epoch (Lightning sizes the LR schedule from it)
        self._skip = (self.epoch, int(skip_batches) * (self.batch_size // self.num_replicas))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.generator.manual_seed(derived_seed(self.seed, self.epoch, self.rank))

    def _order_length(self) -> int:
        return self.num_items

    def __len__(self) -> int:
        return self._order_length() // self.batch_size * (self.batch_size // self.num_replicas)

    def _global_order(self, g: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))  # same global order on every rank
        order = self._global_order(g)
        per_rank = self.batch_size // self.num_replicas
        batches = order[: len(order) // self.batch_size * self.batch_size].view(-1, self.batch_size)
        mine = batches[:, self.rank * per_rank : (self.rank + 1) * per_rank].flatten().tolist()
        skip_epoch, skip = self._skip
        return iter(mine[skip:] if self.epoch == skip_epoch else mine)


class ShuffleSampler(_EpochSplitSampler):
    """A reproducible random permutation of the training set per epoch (incomplete last global batch dropped)."""

    def _global_order(self, g: torch.Generator) -> torch.Tensor:
        return torch.randperm(self.num_items, generator=g)


class ClassBalancedSampler(_EpochSplitSampler):
    """An epoch's order in which each consecutive block of ``num_classes`` indices has one image of every class
    (block order and within-class order shuffled each epoch). The epoch holds ``num_classes * min images per
    class`` indices: the larger classes contribute a fresh random subset every epoch."""

    def __init__(
        self,
        targets: Sequence[int],
        batch_size: int,
        seed: int = 0,
        epoch: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        skip_batches: int = 0,
    ):
        self.targets = torch.as_tensor(list(targets))
        self.classes = torch.unique(self.targets)
        self.by_class = [torch.nonzero(self.targets == c).flatten() for c in self.classes]
        self.per_class = min(len(ix) for ix in self.by_class)
        super().__init__(len(self.targets), batch_size, seed, epoch, num_replicas, rank, skip_batches)

    def _order_length(self) -> int:
        return self.per_class * len(self.by_class)

    def _global_order(self, g: torch.Generator) -> torch.Tensor:
        columns = [ix[torch.randperm(len(ix), generator=g)][: self.per_class] for ix in self.by_class]
        table = torch.stack(columns, 1)  # [per_class, num_classes]: row r = one image of every class
        order = torch.argsort(torch.rand(table.shape, generator=g), dim=1)  # shuffle classes within each row
        return torch.gather(table, 1, order).flatten()
