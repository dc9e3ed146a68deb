"""Samplers: which dataset indices one epoch visits, and in what order.

A sampler has ``len(sampler)`` (indices per epoch) and ``indices(generator)``, which returns
one epoch's index array, drawing any randomness from the ``numpy.random.Generator`` it is
given. The :class:`~gradcraft.data.DataLoader` calls ``indices`` once at the start of every
epoch with its own generator, so an epoch's order is a pure function of the generator state
at the start of the epoch — which is what makes a killed run resumable mid-epoch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "ClassBalancedSampler",
    "DistributedSampler",
    "RandomSampler",
    "Sampler",
    "SequentialSampler",
    "SubsetRandomSampler",
    "WeightedRandomSampler",
]


def _length(data: Any) -> int:
    return int(data) if isinstance(data, (int, np.integer)) else len(data)


class Sampler:
    """Base class. Subclasses implement ``__len__`` and ``indices(generator)``."""

    def __len__(self) -> int:
        raise NotImplementedError

    def indices(self, generator: np.random.Generator) -> np.ndarray:
        """One epoch's dataset indices, shape ``(len(self),)``, int64."""
        raise NotImplementedError

    def __iter__(self) -> Any:
        from gradcraft import backend

        return iter(self.indices(backend.generator()).tolist())


class SequentialSampler(Sampler):
    """``0, 1, …, n-1`` every epoch (evaluation)."""

    def __init__(self, data: Any) -> None:
        self.n = _length(data)

    def __len__(self) -> int:
        return self.n

    def indices(self, generator: np.random.Generator) -> np.ndarray:
        return np.arange(self.n, dtype=np.int64)


class RandomSampler(Sampler):
    """A fresh random permutation every epoch, or ``num_samples`` draws with replacement.

    Args:
        data: a dataset or its length ``n``.
        replacement: draw uniformly with replacement instead of permuting.
        num_samples: indices per epoch (default ``n``; only with ``replacement`` may it exceed ``n``).
    """

    def __init__(self, data: Any, replacement: bool = False, num_samples: int | None = None) -> None:
        self.n = _length(data)
        self.replacement = bool(replacement)
        self.num_samples = self.n if num_samples is None else int(num_samples)
        if self.num_samples < 0 or (not self.replacement and self.num_samples > self.n):
            raise ValueError(
                f"Expected 0 <= num_samples <= {self.n} without replacement. "
                f"Received: num_samples={num_samples}"
            )

    def __len__(self) -> int:
        return self.num_samples

    def indices(self, generator: np.random.Generator) -> np.ndarray:
        if self.replacement:
            return generator.integers(0, self.n, size=self.num_samples, dtype=np.int64)
        return generator.permutation(self.n)[: self.num_samples].astype(np.int64)


class WeightedRandomSampler(Sampler):
    """Draw index ``i`` with probability ``w_i / Σ w`` (``num_samples`` draws per epoch).

    Args:
        weights: non-negative weights, shape ``(n,)``, not all zero.
        num_samples: draws per epoch.
        replacement: draw with replacement (default). Without, ``num_samples <= #{w_i > 0}``.
    """

    def __init__(self, weights: Any, num_samples: int, replacement: bool = True) -> None:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(
                "Expected a non-empty 1-D array of finite, non-negative weights with a positive sum. "
                f"Received: shape={w.shape}"
            )
        self.p = w / w.sum()
        self.num_samples = int(num_samples)
        self.replacement = bool(replacement)
        if self.num_samples < 0 or (not replacement and self.num_samples > int(np.count_nonzero(w))):
            raise ValueError(
                f"Expected 0 <= num_samples <= {np.count_nonzero(w)} (non-zero weights) without "
                f"replacement. Received: num_samples={num_samples}"
            )

    def __len__(self) -> int:
        return self.num_samples

    def indices(self, generator: np.random.Generator) -> np.ndarray:
        return generator.choice(self.p.size, size=self.num_samples, replace=self.replacement,
                                p=self.p).astype(np.int64)


class ClassBalancedSampler(WeightedRandomSampler):
    """Oversample rare classes so every class is drawn equally often in expectation.

    Example ``i`` of class ``k`` gets weight ``1 / n_k`` (``n_k`` = examples of class ``k``), so
    each class has total probability ``1 / K``.

    Args:
        labels: integer labels, shape ``(n,)`` (or a dataset with ``.y``).
        num_samples: draws per epoch (default ``n``).
    """

    def __init__(self, labels: Any, num_samples: int | None = None, replacement: bool = True) -> None:
        y = np.asarray(getattr(labels, "y", labels))
        if y.ndim != 1 or y.size == 0 or y.dtype.kind not in "iu" or y.min() < 0:
            raise ValueError(
                f"Expected 1-D non-negative integer labels. Received: shape={y.shape}, dtype={y.dtype}"
            )
        counts = np.bincount(y)
        super().__init__(1.0 / counts[y], y.size if num_samples is None else num_samples, replacement)


class SubsetRandomSampler(Sampler):
    """Visit only ``indices`` (e.g. a validation fold), shuffled every epoch unless ``shuffle=False``."""

    def __init__(self, indices: Any, shuffle: bool = True) -> None:
        idx = np.asarray(indices, dtype=np.int64)
        if idx.ndim != 1:
            raise ValueError(f"Expected a 1-D array of indices. Received: shape={idx.shape}")
        self.idx = idx
        self.shuffle = bool(shuffle)

    def __len__(self) -> int:
        return int(self.idx.size)

    def indices(self, generator: np.random.Generator) -> np.ndarray:
        return generator.permutation(self.idx) if self.shuffle else self.idx.copy()


class DistributedSampler(Sampler):
    """One process's share of each epoch in a data-parallel run of ``num_replicas`` processes.

    Every process draws the same epoch order (the loaders share a seed, so the permutation
    drawn from ``generator`` is identical on all of them) and takes every ``num_replicas``-th
    index of it, starting at its ``rank``::

        order = permutation(n)[: n − n mod K]        (shuffle, drop_remainder)
        shard = order[rank :: K]

    The shards are disjoint and together cover the epoch. Taking them rank-strided rather
    than in blocks keeps batches aligned: batch j of every process holds examples of the
    same slice ``order[j·B : (j+1)·B]`` of the global order, so K processes with batches of
    B/K see exactly the global batches of one process with batch B.

    Remainder: with ``drop_remainder`` (the default, for training) the last ``n mod K`` indices
    of each epoch's order are left out of that epoch, so every process gets ``n // K`` examples
    and the same number of equal-sized batches; with shuffling a different few are left out
    every epoch. Without it (for evaluation) the first ``n mod K`` processes get one index more
    and every example is visited exactly once.

    Args:
        data: a dataset or its length ``n``.
        num_replicas: the number of processes ``K``.
        rank: this process's index, ``0 <= rank < K``.
        shuffle: a new random order every epoch (else ``0 … n−1``).
        drop_remainder: leave out the last ``n mod K`` indices of each epoch (see above).
    """

    def __init__(
        self, data: Any, num_replicas: int, rank: int, shuffle: bool = True, drop_remainder: bool = True
    ) -> None:
        def is_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        if not is_int(num_replicas) or num_replicas < 1:
            raise ValueError(
                f"Expected a positive integer num_replicas. Received: num_replicas={num_replicas!r}"
            )
        if not is_int(rank) or not 0 <= rank < num_replicas:
            raise ValueError(f"Expected 0 <= rank < num_replicas={num_replicas}. Received: rank={rank!r}")
        self.n = _length(data)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.shuffle = bool(shuffle)
        self.drop_remainder = bool(drop_remainder)

    def __len__(self) -> int:
        if self.drop_remainder:
            return self.n // self.num_replicas
        return len(range(self.rank, self.n, self.num_replicas))

    def indices(self, generator: np.random.Generator) -> np.ndarray:
        order = generator.permutation(self.n) if self.shuffle else np.arange(self.n)
        if self.drop_remainder:
            order = order[: self.n - self.n % self.num_replicas]
        return np.ascontiguousarray(order[self.rank :: self.num_replicas], dtype=np.int64)
