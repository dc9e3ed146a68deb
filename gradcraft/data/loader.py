"""``DataLoader``: minibatches of Tensors, reshuffled every epoch, augmented, resumable.

Each epoch the loader draws, from its own ``numpy.random.Generator``,

1. the epoch's index order (``sampler.indices(generator)``), and
2. one 63-bit *augmentation seed* ``s``.

Batch ``b`` of the epoch is then augmented with a fresh generator seeded by ``(s, b)``. An
epoch is therefore a pure function of the generator state at its start, which gives

* **determinism** — same seed, same batches, whether or not a background thread prefetches;
* **resumption** — :meth:`DataLoader.state_dict` stores that state with the epoch and the
  position inside it (plain JSON types); after :meth:`DataLoader.load_state_dict` the next
  ``iter(loader)`` replays the draws and continues with exactly the batch that would have
  come next.

A batch is ``(x, y)`` of :class:`gradcraft.Tensor`:

* ``x``: float (default dtype, float32), ``(B, C, H, W)`` for images. ``uint8`` data are
  converted as ``x / 255`` into ``[0, 1]``; float data are passed through. Augmentation
  (``transform``) sees these float arrays, then fitted preprocessing (standardization,
  whitening, …) may run as the last step of ``transform``.
* ``y``: int64 class indices ``(B,)``, or float soft targets ``(B, K)`` when a batch-mixing
  step (:class:`~gradcraft.data.Mixup`, :class:`~gradcraft.data.CutMix`) is given as ``mixing``;
  ``None`` for unlabelled data.
"""

from __future__ import annotations

import copy
import inspect
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from gradcraft import backend
from gradcraft.autograd.tensor import Tensor
from gradcraft.data.dataset import Subset
from gradcraft.data.sampler import RandomSampler, Sampler, SequentialSampler

__all__ = ["DataLoader", "to_float"]

_STATE_VERSION = 1


def to_float(x: Any, dtype: Any = None) -> np.ndarray:
    """Convert raw data to the float arrays models and augmentations work on.

    ``uint8`` pixels become ``x / 255`` in ``[0, 1]``; other data are cast to ``dtype``
    (default :func:`gradcraft.default_dtype`, float32) without scaling.
    """
    dt = backend.default_dtype() if dtype is None else np.dtype(dtype)
    x = np.asarray(x)
    if x.dtype == np.uint8:
        out = x.astype(dt)
        out *= dt.type(1.0 / 255.0)
        return out
    return x.astype(dt, copy=False)


def accepts_generator(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` takes a ``generator=`` keyword (so the loader can hand it one)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "generator" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


class _Epoch:
    """What one epoch needs to produce any of its batches on demand."""

    __slots__ = ("aug_seed", "order")

    def __init__(self, order: np.ndarray, aug_seed: int) -> None:
        self.order = order
        self.aug_seed = aug_seed


class DataLoader:
    """Iterate over a dataset in minibatches of :class:`gradcraft.Tensor`.

    Args:
        dataset: an :class:`~gradcraft.data.ArrayDataset` (batches gathered with one indexing
            call) or any object with ``len`` and ``ds[i] -> (x_i, y_i)``.
        batch_size: examples per batch ``B``.
        shuffle: draw a new random order every epoch (a :class:`RandomSampler`).
        drop_last: drop the last batch when it has fewer than ``B`` examples.
        generator: the ``numpy.random.Generator`` for shuffling and augmentation seeds. The
            default is a new generator seeded from the library-wide one
            (:func:`gradcraft.manual_seed`), so runs are reproducible either way.
        transform: a batch-level callable ``f(x) -> x`` on float arrays ``(B, …)``; if it takes a
            ``generator`` keyword it gets the batch's own generator (all
            :mod:`gradcraft.data.augment` transforms do).
        sampler: a :class:`~gradcraft.data.Sampler` (sequential, random, weighted, class-balanced,
            subset); excludes ``shuffle``.
        mixing: a batch-mixing step ``m(x, y, generator=…) -> (x, y_soft)`` such as
            :class:`~gradcraft.data.Mixup` or :class:`~gradcraft.data.CutMix`; runs after
            ``transform``.
        prefetch: batches prepared ahead by a background thread (0 = none). NumPy releases the
            GIL in its kernels, so augmentation of the next batch overlaps the training step.
        dtype: float dtype of ``x`` (default :func:`gradcraft.default_dtype`).
        stream: an integer mixed into every batch's augmentation seed, ``(s, b, stream)``.
            The processes of a data-parallel run share the loader's seed (so they agree on the
            order) and pass their rank here (so they augment and mix differently).

    Example:
        >>> train = gradcraft.data.load("fashion-mnist", split="train")
        >>> loader = DataLoader(train, batch_size=128, shuffle=True,
        ...                     generator=np.random.default_rng(0))
        >>> for x, y in loader:      # x: (128, 1, 28, 28) float32 in [0, 1], y: (128,) int64
        ...     ...
    """

    def __init__(self, dataset: Any, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 generator: np.random.Generator | None = None,
                 transform: Callable[..., Any] | None = None, sampler: Sampler | None = None,
                 mixing: Callable[..., Any] | None = None, prefetch: int = 0, dtype: Any = None,
                 stream: int | None = None) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"Expected a positive integer batch_size. Received: batch_size={batch_size!r}")
        if isinstance(prefetch, bool) or not isinstance(prefetch, (int, np.integer)) or prefetch < 0:
            raise ValueError(f"Expected a non-negative integer prefetch. Received: prefetch={prefetch!r}")
        if sampler is not None and shuffle:
            raise ValueError("Expected either shuffle=True or a sampler, not both. Received: both")
        if stream is not None and (isinstance(stream, bool) or not isinstance(stream, (int, np.integer))
                                   or stream < 0):
            raise ValueError(f"Expected a non-negative integer stream or None. Received: stream={stream!r}")
        if generator is not None and not isinstance(generator, np.random.Generator):
            raise TypeError(
                f"Expected a numpy.random.Generator. Received: generator of type {type(generator).__name__}"
            )
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        if sampler is None:
            sampler = RandomSampler(len(dataset)) if shuffle else SequentialSampler(len(dataset))
        self.sampler = sampler
        self.transform = transform
        self.mixing = mixing
        self.prefetch = int(prefetch)
        self.dtype = dtype
        self.stream = None if stream is None else int(stream)
        if generator is None:
            generator = np.random.default_rng(int(backend.generator().integers(2**63)))
        self.generator = generator
        self._transform_takes_gen = transform is not None and accepts_generator(transform)
        self._epoch = 0
        self._position = 0
        self._in_progress = False
        self._resume = False
        self._epoch_start_state: dict = copy.deepcopy(generator.bit_generator.state)

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def epoch(self) -> int:
        """Index of the current epoch (or of the next one when none is running)."""
        return self._epoch

    # ------------------------------------------------------------------ batches
    def _plan(self) -> _Epoch:
        order = np.asarray(self.sampler.indices(self.generator), dtype=np.int64)
        return _Epoch(order, int(self.generator.integers(2**63)))

    def _fetch(self, idx: np.ndarray) -> tuple[Any, Any]:
        ds = self.dataset
        while isinstance(ds, Subset):  # index through subsets down to the arrays
            idx = ds.indices[idx]
            ds = ds.dataset
        x_all, y_all = getattr(ds, "x", None), getattr(ds, "y", None)
        if isinstance(x_all, np.ndarray) and (y_all is None or isinstance(y_all, np.ndarray)):
            return x_all[idx], (None if y_all is None else y_all[idx])
        items = [ds[int(i)] for i in idx]
        xs = np.stack([np.asarray(item[0]) for item in items])
        ys = [item[1] for item in items]
        return xs, (None if any(v is None for v in ys) else np.asarray(ys))

    def _batch(self, plan: _Epoch, b: int) -> tuple[Tensor, Tensor | None]:
        idx = plan.order[b * self.batch_size:(b + 1) * self.batch_size]
        x, y = self._fetch(idx)
        x = to_float(x, self.dtype)
        key = [plan.aug_seed, b] if self.stream is None else [plan.aug_seed, b, self.stream]
        gen = np.random.default_rng(key)
        if self.transform is not None:
            x = self.transform(x, generator=gen) if self._transform_takes_gen else self.transform(x)
        if self.mixing is not None:
            x, y = self.mixing(x, y, generator=gen)
        if y is not None:
            y = np.asarray(y)
            y = y.astype(np.int64) if y.dtype.kind in "iub" else y.astype(x.dtype, copy=False)
            y = Tensor(y)
        return Tensor(np.asarray(x)), y

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor | None]]:
        if self._resume:
            self._resume = False
            self.generator.bit_generator.state = copy.deepcopy(self._epoch_start_state)
            start = self._position
        else:
            if self._in_progress:  # the previous iteration was abandoned mid-epoch
                self._epoch += 1
            self._epoch_start_state = copy.deepcopy(self.generator.bit_generator.state)
            start = 0
        plan = self._plan()
        self._in_progress = True
        self._position = start
        return self._run(plan, start, len(self))

    def _run(self, plan: _Epoch, start: int, stop: int) -> Iterator[tuple[Tensor, Tensor | None]]:
        batches = self._batches_threaded(plan, start, stop) if self.prefetch else (
            self._batch(plan, b) for b in range(start, stop))
        try:
            for b, batch in enumerate(batches, start):
                self._position = b + 1
                yield batch
            self._in_progress = False
            self._position = 0
            self._epoch += 1
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    def _batches_threaded(self, plan: _Epoch, start: int, stop: int) -> Iterator[Any]:
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop_event = threading.Event()

        def produce() -> None:
            for b in range(start, stop):
                try:
                    item: tuple[str, Any] = ("ok", self._batch(plan, b))
                except BaseException as exc:  # handed to the consumer, which re-raises it
                    item = ("error", exc)
                while not stop_event.is_set():
                    try:
                        q.put(item, timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if stop_event.is_set() or item[0] == "error":
                    return

        worker = threading.Thread(target=produce, name="gradcraft-prefetch", daemon=True)
        worker.start()
        try:
            for _ in range(start, stop):
                kind, value = q.get()
                if kind == "error":
                    raise value
                yield value
        finally:
            stop_event.set()
            worker.join()

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict:
        """The loader's position as plain JSON types (``json.dumps`` works on it).

        Keys: ``epoch``, ``position`` (batches already delivered in that epoch),
        ``in_progress``, ``generator`` (the bit generator state at the start of the running
        epoch, or the current state between epochs), ``num_batches`` and ``version``.
        """
        state = self._epoch_start_state if self._in_progress else self.generator.bit_generator.state
        return {
            "version": _STATE_VERSION,
            "epoch": self._epoch,
            "position": self._position if self._in_progress else 0,
            "in_progress": self._in_progress,
            "num_batches": len(self),
            "generator": copy.deepcopy(state),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; the next ``iter(self)`` continues where it stopped.

        Raises:
            ValueError: if the state is malformed or was saved for a different number of batches.
        """
        try:
            version, epoch, position = state["version"], int(state["epoch"]), int(state["position"])
            in_progress, num_batches, gen_state = bool(state["in_progress"]), int(state["num_batches"]), \
                state["generator"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"Expected a DataLoader.state_dict(). Received: a dict without {exc}") from exc
        if version != _STATE_VERSION:
            raise ValueError(f"Expected state version {_STATE_VERSION}. Received: version={version!r}")
        if num_batches != len(self) or not 0 <= position <= num_batches or epoch < 0:
            raise ValueError(
                f"Expected a state for {len(self)} batches per epoch with 0 <= position <= {len(self)}. "
                f"Received: num_batches={num_batches}, position={position}, epoch={epoch}"
            )
        try:
            self.generator.bit_generator.state = copy.deepcopy(gen_state)
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(
                f"Expected a generator state of {type(self.generator.bit_generator).__name__}. "
                f"Received: {exc}"
            ) from exc
        self._epoch = epoch
        self._position = position
        self._in_progress = in_progress
        self._resume = in_progress
        self._epoch_start_state = copy.deepcopy(gen_state)

    def __repr__(self) -> str:
        return (f"DataLoader(batch_size={self.batch_size}, batches={len(self)}, "
                f"sampler={type(self.sampler).__name__}, prefetch={self.prefetch})")
