"""Deterministic, resumable batch iterators over in-memory splits (dict of arrays with a common leading N).

The whole state is two integers (epoch, position) plus the seed, so it is saved in every checkpoint and a
resumed run sees exactly the batches an uninterrupted run would. Each epoch's order is a permutation drawn
from `np.random.default_rng([seed, epoch])`, independent of how many processes read it; each process takes its
contiguous slice of every global batch, so P processes together see the same global batch as one process.

Length bucketing (`num_buckets > 1`): rows padded along axis 1 to a split-wide width waste most of a step on
padding when lengths vary (CMUdict words average 7.4 letters, padded to 20). Rows are then grouped by
their token count into `num_buckets` quantile buckets, each batch is drawn from one bucket, and the padded
arrays are cut to the longest row of that bucket: a few fixed shapes (one compilation each), not one per
batch.
"""
from __future__ import annotations

import numpy as np


def _check_split(arrays: dict[str, np.ndarray], name: str, lengths: dict[str, str] | None = None) -> int:
    """N, the common leading size of the split's arrays, after checking them and the lengths they declare."""
    if not arrays:
        raise ValueError(f"{name}: empty dict of arrays")
    sizes = {k: np.shape(v)[0] if np.ndim(v) else None for k, v in arrays.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise ValueError(f"{name}: arrays need a common leading N, got leading sizes {sizes}")
    check_split_lengths(arrays, lengths or {}, name)
    return next(iter(sizes.values()))


def check_split_lengths(arrays: dict[str, np.ndarray], lengths: dict[str, str], name: str) -> None:
    """Each lengths array named in `lengths` ({padded array: its lengths array}) is int[N] with values in
    [0, width of the padded array].

    Checked here, on the host, because the batches go into jitted steps, where a length above the width would
    act as the width and a negative one as 0 without a word (masks.lengths_to_mask cannot fail loudly).
    """
    for key, length_key in lengths.items():
        for k in (key, length_key):
            if k not in arrays:
                raise ValueError(f"{name}: `lengths` names array {k!r}, not among {sorted(arrays)}")
        x, n = np.asarray(arrays[key]), np.asarray(arrays[length_key])
        if x.ndim < 2 or n.ndim != 1 or not np.issubdtype(n.dtype, np.integer):
            raise ValueError(f"{name}: lengths need {key!r} of rank >= 2 padded along axis 1 and "
                             f"{length_key!r} int[N]; got shapes {x.shape}, {n.shape} ({n.dtype})")
        if n.size and (n.min() < 0 or n.max() > x.shape[1]):
            raise ValueError(f"{name}: {length_key!r} has values in [{n.min()}, {n.max()}], outside "
                             f"[0, {x.shape[1]}] (the width of {key!r})")


class ArrayIterator:
    """Endless global batches of `batch_size` rows; yields this process's `batch_size // process_count` slice.

    Epochs: the rows that do not fill a whole batch at the end of a permutation are dropped for that epoch
    (a different tail each epoch). `shuffle=False` walks the rows in order.

    `lengths` maps each array padded along axis 1 to the name of its int[N] lengths array, e.g.
    {"src": "src_lengths", "tgt_in": "tgt_lengths"}; they are checked (`check_split_lengths`) when the
    iterator is built, whatever `num_buckets`. Bucketing: with `num_buckets > 1` a row's bucket is fixed by
    its total length (the sum of its distinct lengths arrays; boundaries at the quantiles over the split). An
    epoch shuffles the rows, groups them by bucket, cuts each bucket into whole batches (dropping that
    bucket's tail) and shuffles the batches; each batch's padded arrays are cut to its bucket's width.
    `num_buckets=1` is the plain iterator above.
    """

    def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, seed: int = 0, shuffle: bool = True,
                 process_index: int = 0, process_count: int = 1, name: str = "train",
                 lengths: dict[str, str] | None = None, num_buckets: int = 1):
        self.n = _check_split(arrays, name, lengths)
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
        self._order_epoch, self._order, self._batch_bucket = -1, None, None
        self.num_buckets = int(num_buckets)
        self.bucket, self.widths = None, None  # int[N] bucket of each row; per bucket {array: width}
        if self.num_buckets < 1:
            raise ValueError(f"num_buckets: expected >= 1, got {num_buckets}")
        if self.num_buckets > 1:
            self._plan_buckets(lengths or {}, name)

    def _plan_buckets(self, lengths: dict[str, str], name: str) -> None:
        if not lengths:
            raise ValueError(f"{name}: num_buckets={self.num_buckets} needs `lengths` naming the padded "
                             "arrays and their lengths arrays")
        total = sum(self.arrays[k].astype(np.int64) for k in dict.fromkeys(lengths.values()))
        edges = np.quantile(total, np.arange(1, self.num_buckets) / self.num_buckets)
        # Bucket b holds the rows with edges[b-1] < total <= edges[b].
        self.bucket = np.searchsorted(edges, total, side="left")
        counts = np.bincount(self.bucket, minlength=self.num_buckets)
        if counts.min() < self.batch_size:
            raise ValueError(f"{name}: num_buckets={self.num_buckets} leaves a bucket with {counts.min()} "
                             f"rows, fewer than batch_size={self.batch_size} (bucket sizes "
                             f"{counts.tolist()}); use fewer buckets")
        self.widths = [{key: max(1, int(self.arrays[length_key][self.bucket == b].max()))
                        for key, length_key in lengths.items()} for b in range(self.num_buckets)]

    def _epoch_order(self) -> np.ndarray:
        if self._order_epoch != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch])
            order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
            if self.bucket is not None:
                bs, batches = self.batch_size, []
                for b in range(self.num_buckets):
                    rows = order[self.bucket[order] == b]  # bucket b's rows, in this epoch's shuffled order
                    batches += [rows[i:i + bs] for i in range(0, len(rows) - bs + 1, bs)]
                if self.shuffle:
                    batches = [batches[i] for i in rng.permutation(len(batches))]
                order = np.concatenate(batches)
                self._batch_bucket = self.bucket[order[::bs]]
            self._order, self._order_epoch = order, self.epoch
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
        if self.position + self.batch_size > len(self._epoch_order()):
            self.epoch, self.position = self.epoch + 1, 0
        rows = self._epoch_order()[self.position:self.position + self.batch_size]
        widths = {}
        if self.bucket is not None:
            widths = self.widths[self._batch_bucket[self.position // self.batch_size]]
        self.position += self.batch_size
        per = self.batch_size // self.process_count
        rows = rows[self.process_index * per:(self.process_index + 1) * per]
        return {k: v[rows, :widths[k]] if k in widths else v[rows] for k, v in self.arrays.items()}


def eval_batches(arrays: dict[str, np.ndarray], batch_size: int, num_batches: int = 0, process_index: int = 0,
                 process_count: int = 1, name: str = "val", lengths: dict[str, str] | None = None):
    """Yield this process's slices of fixed global evaluation batches, in order.

    `num_batches=0` covers the split once; the last batch is completed by wrapping around to the first rows
    (so those few rows count twice in a batch-averaged metric; a fixed batch shape compiles once). `lengths`
    as for `ArrayIterator`: checked at the call.
    """
    n = _check_split(arrays, name, lengths)
    if batch_size <= 0 or batch_size % process_count:
        raise ValueError(f"batch_size: expected a positive multiple of process_count={process_count}, "
                         f"got {batch_size}")
    # The checks above run at the call; the batches come from a generator.
    return _eval_batches(arrays, n, batch_size, num_batches, process_index, process_count)


def _eval_batches(arrays, n, batch_size, num_batches, process_index, process_count):
    total = num_batches or -(-n // batch_size)
    per = batch_size // process_count
    for b in range(total):
        rows = np.arange(b * batch_size, (b + 1) * batch_size) % n  # wraps around at the end
        rows = rows[process_index * per:(process_index + 1) * per]
        yield {k: np.asarray(v)[rows] for k, v in arrays.items()}
