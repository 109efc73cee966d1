"""Deterministic, resumable batch iterators over in-memory splits (dict of arrays with a common leading N).

The whole state is two integers (epoch, position) plus the seed, so it is saved in every checkpoint and a
resumed run sees exactly the batches an uninterrupted run would. Each epoch's order is a permutation drawn
from `np.random.default_rng([seed, epoch])`, independent of how many processes read it; each process takes its
contiguous slice of every global batch, so P processes together see the same global batch as one process.
"""
from __future__ import annotations

import numpy as np


def _check_split(arrays: dict[str, np.ndarray], name: str) -> int:
    if not arrays:
        raise ValueError(f"{name}: empty dict of arrays")
    sizes = {k: np.shape(v)[0] if np.ndim(v) else None for k, v in arrays.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise ValueError(f"{name}: arrays need a common leading N, got leading sizes {sizes}")
    return next(iter(sizes.values()))


class ArrayIterator:
    """Endless global batches of `batch_size` rows; yields this process's `batch_size // process_count` slice.

    Epochs: the rows that do not fill a whole batch at the end of a permutation are dropped for that epoch
    (a different tail each epoch). `shuffle=False` walks the rows in order.
    """

    def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, seed: int = 0, shuffle: bool = True,
                 process_index: int = 0, process_count: int = 1, name: str = "train"):
        self.n = _check_split(arrays, name)
        if batch_size <= 0 or batch_size % process_count:
            raise ValueError(f"batch_size: expected a positive multiple of process_count={process_count}, "
                             f"got {batch_size}")
        if batch_size > self.n:
            raise ValueError(f"batch_size: {batch_size} exceeds the {self.n} rows of split {name!r}")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index: expected in [0, {process_count}), got {process_index}")
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.process_index, self.process_count = process_index, process_count
        self.epoch, self.position = 0, 0
        self._order_epoch, self._order = -1, None

    def _epoch_order(self) -> np.ndarray:
        if self._order_epoch != self.epoch:
            if self.shuffle:
                self._order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
            else:
                self._order = np.arange(self.n)
            self._order_epoch = self.epoch
        return self._order

    def get_state(self) -> dict[str, int]:
        return {"epoch": int(self.epoch), "position": int(self.position), "seed": int(self.seed)}

    def set_state(self, state: dict[str, int]) -> None:
        if int(state.get("seed", self.seed)) != self.seed:
            raise ValueError(f"iterator state: saved with seed {state['seed']}, "
                             f"this iterator has seed {self.seed}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self.position + self.batch_size > self.n:
            self.epoch, self.position = self.epoch + 1, 0
        rows = self._epoch_order()[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        per = self.batch_size // self.process_count
        rows = rows[self.process_index * per:(self.process_index + 1) * per]
        return {k: v[rows] for k, v in self.arrays.items()}


def eval_batches(arrays: dict[str, np.ndarray], batch_size: int, num_batches: int = 0, process_index: int = 0,
                 process_count: int = 1, name: str = "val"):
    """Yield this process's slices of fixed global evaluation batches, in order.

    `num_batches=0` covers the split once; the last batch is completed by wrapping around to the first rows
    (so those few rows count twice in a batch-averaged metric; a fixed batch shape compiles once).
    """
    n = _check_split(arrays, name)
    if batch_size <= 0 or batch_size % process_count:
        raise ValueError(f"batch_size: expected a positive multiple of process_count={process_count}, "
                         f"got {batch_size}")
    total = num_batches or -(-n // batch_size)
    per = batch_size // process_count
    for b in range(total):
        rows = np.arange(b * batch_size, (b + 1) * batch_size) % n  # wraps around at the end
        rows = rows[process_index * per:(process_index + 1) * per]
        yield {k: np.asarray(v)[rows] for k, v in arrays.items()}
