"""The one place that knows where arrays live and how random numbers are drawn.

Everything else asks this module for its array module (``xp``), the default floating dtype
and the random generator, so the same op code runs on NumPy (CPU) or CuPy (GPU).

* ``get_array_module(*arrays)`` returns ``numpy`` or ``cupy`` for the given arrays
  (Chainer's convention: op code writes ``xp = get_array_module(x)``).
* ``default_dtype()`` is ``float32`` unless changed by ``set_default_dtype``.
* ``manual_seed(seed)`` reseeds the global generator returned by ``generator()``; every random
  draw in the library (init, dropout, shuffling, augmentation) comes from an explicit
  ``numpy.random.Generator``, so runs are reproducible and resumable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = [
    "Generator",
    "as_array",
    "default_dtype",
    "generator",
    "get_array_module",
    "get_rng_state",
    "manual_seed",
    "set_default_dtype",
    "set_rng_state",
]

_FLOAT_DTYPES = (np.float16, np.float32, np.float64)
_default_dtype: np.dtype = np.dtype(np.float32)

Generator = np.random.Generator
_generator: np.random.Generator = np.random.default_rng(0)


def get_array_module(*arrays: Any) -> Any:
    """Return the array module (``numpy`` or ``cupy``) that owns ``arrays``.

    NumPy is returned unless one of the arrays is a CuPy array.
    """
    for a in arrays:
        mod = type(a).__module__
        if mod.startswith("cupy"):
            import cupy

            return cupy
    return np


def default_dtype() -> np.dtype:
    """The floating dtype new tensors get (``float32`` unless changed)."""
    return _default_dtype


def set_default_dtype(dtype: Any) -> None:
    """Set the floating dtype used for new tensors and parameters.

    Raises:
        ValueError: if ``dtype`` is not float16, float32 or float64.
    """
    global _default_dtype
    dt = np.dtype(dtype)
    if dt.type not in _FLOAT_DTYPES:
        raise ValueError(f"Expected a floating dtype (float16, float32, float64). Received: dtype={dt}")
    _default_dtype = dt


@contextlib.contextmanager
def default_dtype_as(dtype: Any) -> Iterator[None]:
    """Temporarily set the default dtype (used by gradcheck to work in float64)."""
    previous = _default_dtype
    set_default_dtype(dtype)
    try:
        yield
    finally:
        set_default_dtype(previous)


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the library-wide generator and return it.

    Raises:
        ValueError: if ``seed`` is negative or not an integer.
    """
    global _generator
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"Expected a non-negative integer seed. Received: seed={seed!r}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def generator() -> np.random.Generator:
    """The library-wide seeded ``numpy.random.Generator``."""
    return _generator


def get_rng_state() -> dict:
    """A JSON-serialisable snapshot of the global generator's state."""
    return _generator.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore a state captured by :func:`get_rng_state`."""
    _generator.bit_generator.state = state


def as_array(data: Any, dtype: Any = None) -> Any:
    """Convert ``data`` to an array of the current array module.

    Existing arrays keep their dtype (as ``torch.tensor`` does); Python numbers and lists of
    floats become :func:`default_dtype`; integer and boolean data keep their kind. An array
    that already has the requested dtype is not copied.
    """
    xp = get_array_module(data)
    if dtype is not None:
        return xp.asarray(data, dtype=dtype)
    if hasattr(data, "__array_interface__") or hasattr(data, "__cuda_array_interface__"):
        return xp.asarray(data)
    arr = xp.asarray(data)
    if arr.dtype.kind == "f":
        return arr.astype(_default_dtype, copy=False)
    return arr
