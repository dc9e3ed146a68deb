"""Datasets held as arrays, subsets, and seeded (stratified) train/validation splits.

A dataset is anything with ``len(ds)`` and ``ds[i] -> (x_i, y_i)``. The common case, a whole
dataset in memory, is :class:`ArrayDataset`: ``x`` of shape ``(N, …)`` (images ``(N, C, H, W)``
as ``uint8``, signals ``(N, C, T)``, features ``(N, D)``) and ``y`` of shape ``(N,)`` (``int64``
class indices) or ``(N, …)`` for other targets. :class:`gradcraft.data.DataLoader` gathers whole
batches from an ``ArrayDataset`` with one fancy-indexing call instead of ``N`` Python calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gradcraft import backend

__all__ = [
    "ArrayDataset",
    "Dataset",
    "Subset",
    "split_indices",
    "stratified_split_indices",
    "train_val_split",
]


class Dataset:
    """Base class: subclasses implement ``__len__`` and ``__getitem__(i) -> (x_i, y_i)``."""

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")


class ArrayDataset(Dataset):
    """A dataset of in-memory arrays.

    Args:
        x: inputs, shape ``(N, …)``; images are ``(N, C, H, W)`` (``uint8`` for raw pixels).
        y: targets, shape ``(N,)`` (``int64`` class indices) or ``(N, …)``; may be ``None``.
        classes: class names, ``classes[k]`` is the name of label ``k``.
        name: a short description (``"fashion-mnist/train"``) used in ``repr``.

    ``ds[i]`` returns ``(x[i], y[i])``; an index array or slice returns the stacked batch.

    Raises:
        ValueError: if ``x`` and ``y`` have different lengths.
    """

    def __init__(self, x: Any, y: Any = None, classes: Sequence[str] | None = None,
                 name: str | None = None) -> None:
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError(f"Expected x with a batch axis (ndim >= 1). Received: x.shape={x.shape}")
        if y is not None:
            y = np.asarray(y)
            if y.ndim == 0 or y.shape[0] != x.shape[0]:
                raise ValueError(
                    f"Expected as many targets as inputs. Received: x.shape={x.shape}, y.shape={y.shape}"
                )
        self.x = x
        self.y = y
        self.classes = list(classes) if classes is not None else None
        self.name = name

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, index: Any) -> tuple[Any, Any]:
        return self.x[index], (None if self.y is None else self.y[index])

    @property
    def num_classes(self) -> int | None:
        """Number of classes (``len(classes)``, else ``max(y) + 1`` for integer labels)."""
        if self.classes is not None:
            return len(self.classes)
        if self.y is not None and self.y.dtype.kind in "iu" and self.y.ndim == 1 and self.y.size:
            return int(self.y.max()) + 1
        return None

    def subset(self, indices: Any) -> ArrayDataset:
        """A new ``ArrayDataset`` holding the rows ``indices`` (copied, so batches stay fast)."""
        idx = np.asarray(indices, dtype=np.int64)
        return ArrayDataset(self.x[idx], None if self.y is None else self.y[idx], self.classes, self.name)

    def __repr__(self) -> str:
        y = "None" if self.y is None else f"{self.y.shape} {self.y.dtype}"
        label = f"{self.name!r}, " if self.name else ""
        return f"ArrayDataset({label}x={self.x.shape} {self.x.dtype}, y={y})"


class Subset(Dataset):
    """The items ``indices`` of another dataset, without copying it."""

    def __init__(self, dataset: Any, indices: Any) -> None:
        idx = np.asarray(indices, dtype=np.int64)
        n = len(dataset)
        if idx.ndim != 1 or (idx.size and (idx.min() < -n or idx.max() >= n)):
            raise ValueError(
                f"Expected a 1-D array of indices in [0, {n}). Received: shape={idx.shape}"
                + (f", range [{idx.min()}, {idx.max()}]" if idx.size else "")
            )
        self.dataset = dataset
        self.indices = idx % n if n else idx
        self.classes = getattr(dataset, "classes", None)

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, index: Any) -> tuple[Any, Any]:
        return self.dataset[int(self.indices[index])]


def labels_of(dataset: Any) -> np.ndarray:
    """The integer labels of a dataset (``dataset.y`` when present, else read item by item)."""
    y = getattr(dataset, "y", None)
    if y is not None:
        return np.asarray(y)
    if isinstance(dataset, Subset):
        return labels_of(dataset.dataset)[dataset.indices]
    return np.asarray([dataset[i][1] for i in range(len(dataset))])


def _check_fraction(fraction: float) -> None:
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"Expected a fraction in (0, 1). Received: val_fraction={fraction!r}")


def split_indices(n: int, val_fraction: float = 0.1,
                  generator: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Randomly split ``range(n)`` into sorted ``(train, val)`` index arrays.

    ``val`` gets ``round(val_fraction · n)`` indices. The permutation comes from ``generator``
    (default: the library-wide generator), so the split is reproducible.
    """
    _check_fraction(val_fraction)
    gen = backend.generator() if generator is None else generator
    perm = gen.permutation(int(n))
    n_val = round(float(val_fraction) * n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def stratified_split_indices(labels: Any, val_fraction: float = 0.1,
                             generator: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split indices so every class keeps its proportion in both parts.

    For each class ``k`` with ``n_k`` examples, ``⌊f · n_k⌋`` or ``⌈f · n_k⌉`` of them (``f`` =
    ``val_fraction``; rounded so the total is ``round(f · N)``, largest remainders first), chosen by
    a seeded permutation, go to validation; the rest to training. Both arrays are sorted.

    Args:
        labels: shape ``(N,)`` integer (or any hashable-valued) labels.
        val_fraction: fraction of each class held out, in (0, 1).
        generator: the ``numpy.random.Generator`` to draw from (default: the library's).
    """
    _check_fraction(val_fraction)
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"Expected 1-D labels for a stratified split. Received: labels.shape={y.shape}")
    gen = backend.generator() if generator is None else generator
    classes, inverse = np.unique(y, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse, minlength=classes.size)
    # largest-remainder rounding: per-class counts ≈ val_fraction · n_k, summing to round(val_fraction · N)
    ideal = float(val_fraction) * counts
    n_val = np.floor(ideal).astype(np.int64)
    short = round(float(val_fraction) * y.size) - int(n_val.sum())
    if short > 0:
        n_val[np.argsort(-(ideal - n_val), kind="stable")[:short]] += 1
    val_parts = []
    start = 0
    for count, k in zip(counts, n_val):
        members = order[start:start + count]
        start += count
        val_parts.append(gen.permutation(members)[:k])
    val = np.sort(np.concatenate(val_parts)) if val_parts else np.zeros(0, np.int64)
    mask = np.ones(y.size, dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask), val


def train_val_split(dataset: Any, val_fraction: float = 0.1, stratify: bool = True,
                    generator: np.random.Generator | None = None) -> tuple[Any, Any]:
    """Split a dataset into seeded training and validation parts.

    With ``stratify`` (default) each class keeps its proportion (see
    :func:`stratified_split_indices`); otherwise the split is a plain random one. An
    :class:`ArrayDataset` is split into two ``ArrayDataset`` objects, anything else into
    :class:`Subset` views.

    Example:
        >>> train, val = train_val_split(load("fashion-mnist"), 0.1,
        ...                              generator=np.random.default_rng(0))
    """
    if stratify:
        train_idx, val_idx = stratified_split_indices(labels_of(dataset), val_fraction, generator)
    else:
        train_idx, val_idx = split_indices(len(dataset), val_fraction, generator)
    if isinstance(dataset, ArrayDataset):
        return dataset.subset(train_idx), dataset.subset(val_idx)
    return Subset(dataset, train_idx), Subset(dataset, val_idx)
