"""Epoch planning shared by both loaders: the seeded permutation, rank sharding, augmentation draws.

Because a sample's augmentation depends only on its position in the epoch's permutation, the
batches that ``world_size`` ranks see together are exactly the batches of one process with a
``world_size`` times larger batch (DistributedSampler's interleaved sharding).
"""

from __future__ import annotations

import math

import torch

from cnnzoo.data.base import seed_for
from cnnzoo.data.transform import AugmentParams
from cnnzoo.errors import ConfigError



def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")


def plan_batches(
    n: int, batch_size: int, rank: int, world_size: int, *, train: bool, drop_last: bool
) -> tuple[int, list[tuple[int, int]]]:
    """``(total_positions, [(start, stop), ...])`` of this rank's batches in its position list.

    Training: the epoch's positions are padded (wrapping around) to a multiple of ``world_size``;
    rank ``r`` takes positions ``r, r + W, r + 2W, ...`` (the same count on every rank), cut into
    batches of ``batch_size``.  Evaluation: no padding; with ``world_size > 1`` every rank cuts its
    ``n // W`` or ``n // W + 1`` samples into the same number of batches (sizes differ by at most
    one), so collective operations inside the loop cannot deadlock.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if train:
        total = math.ceil(n / world_size) * world_size if n else 0
        per_rank = total // world_size
        count = per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)
        return total, [(i * batch_size, min((i + 1) * batch_size, per_rank)) for i in range(count)]
    per_rank = len(range(rank, n, world_size))
    if world_size == 1:
        count = math.ceil(per_rank / batch_size)
        return n, [(i * batch_size, min((i + 1) * batch_size, per_rank)) for i in range(count)]
    count = math.ceil(math.ceil(n / world_size) / batch_size)
    bounds = [round(i * per_rank / count) for i in range(count + 1)] if count else [0]
    return n, list(zip(bounds[:-1], bounds[1:]))


class _EpochPlanner:
    """Shared epoch bookkeeping: permutation, padding, rank positions, augmentation parameters."""

    def __init__(self, n, batch_size, train, shuffle, rank, world_size, seed, drop_last, transform):
        _check_rank(rank, world_size)
        self.n, self.batch_size, self.train = n, batch_size, train
        self.shuffle = train if shuffle is None else shuffle
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.drop_last = drop_last
        self.transform = transform
        self.epoch = 0
        self.total, self.batches = plan_batches(n, batch_size, rank, world_size, train=train, drop_last=drop_last)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle and augmentation the next iteration uses."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (counting the wrap-around padding when training)."""
        return self.batches[-1][1] if self.batches else 0

    def plan(self) -> tuple[torch.Tensor, AugmentParams | None]:
        """This rank's sample indices and their augmentation parameters (CPU) for the current epoch."""
        g = torch.Generator().manual_seed(seed_for(self.seed, self.epoch, 0xE90C))
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        params = self.transform.draw(self.total, g) if (self.train and self.transform.random) else None
        positions = torch.arange(self.rank, self.total, self.world_size)
        indices = order[positions % max(self.n, 1)] if self.n else positions
        return indices, (params[positions] if params is not None else None)
