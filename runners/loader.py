"""A trial's data, and minibatches drawn by index from tensors already on the training device.

``trial_data`` is the one place a trial's data is prepared: its own dataset (``spec.dataset``,
which a grid may vary) with its training subset taken (``train.train_subset``).

For the small datasets gradatlas studies, per-sample Python collation (``DataLoader`` with a
``Dataset``) costs more than the forward pass. Holding the split as two tensors and slicing a
seeded permutation is exact, deterministic and an order of magnitude cheaper.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from gradatlas.datasets import load_dataset

if TYPE_CHECKING:
    from gradatlas.datasets import DataSplits
    from gradatlas.suites.spec import TrialSpec


def trial_data(spec: TrialSpec) -> DataSplits:
    """The data one trial trains and is judged on: its dataset (built once per process and
    cached), training on ``spec.train.train_subset`` examples of it (0: all), chosen by the
    data seed, so every seed of a cell, alone or stacked, trains on the same examples."""
    ds = spec.dataset
    data = load_dataset(ds.name, ds.seed, ds.options)
    return data.with_train_subset(spec.train.train_subset, ds.seed)


class TensorBatches:
    """An epoch-sized iterable of ``(x, y)`` minibatches, reshuffled each epoch from ``seed``.

    Lightning accepts any sized iterable as a dataloader; this one keeps the permutation on the
    CPU (so the order is the same on every device) and gathers on the data's device.
    """

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, shuffle: bool = True
    ):
        self.x, self.y = x, y
        self.batch_size = min(batch_size, len(x))
        self.shuffle = shuffle
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        if self.shuffle:
            order = torch.randperm(n, generator=self._generator).to(self.x.device)
        else:
            order = torch.arange(n, device=self.x.device)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.x[idx], self.y[idx]


class StackedBatches:
    """The minibatches of K seeds at once: ``(x, y)`` of shape (K, B, ...), where row k is
    exactly the batch ``TensorBatches(x, y, batch_size, seeds[k])`` yields at that step (same
    generator, same permutations, same order), gathered in one indexing from the device data.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seeds: list[int]):
        self.members = [TensorBatches(x, y, batch_size, seed) for seed in seeds]
        self.x, self.y = x, y
        self.batch_size = self.members[0].batch_size

    def __len__(self) -> int:
        return len(self.members[0])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        orders = torch.stack([torch.randperm(n, generator=m._generator) for m in self.members]).to(
            self.x.device
        )
        for start in range(0, n, self.batch_size):
            idx = orders[:, start : start + self.batch_size]  # (K, B)
            yield self.x[idx], self.y[idx]
