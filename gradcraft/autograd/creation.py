"""Functions that make new tensors: ``tensor``, ``zeros``, ``randn``, …

Random tensors draw from ``generator`` when given, else from the library-wide seeded
generator (:func:`gradcraft.manual_seed`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcraft import backend
from gradcraft.autograd.tensor import Tensor

__all__ = [
    "arange",
    "empty",
    "eye",
    "full",
    "full_like",
    "linspace",
    "ones",
    "ones_like",
    "rand",
    "randint",
    "randn",
    "randn_like",
    "tensor",
    "zeros",
    "zeros_like",
]


def _shape(shape: tuple[Any, ...]) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(n) for n in shape)


def _dtype(dtype: Any) -> np.dtype:
    return backend.default_dtype() if dtype is None else np.dtype(dtype)


def _make(data: Any, requires_grad: bool) -> Tensor:
    t = Tensor._from_op(data, False)
    if requires_grad:
        t.requires_grad_(True)
    return t


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """A tensor from array-like ``data`` (Python floats become float32 by default)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def zeros(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _make(np.zeros(_shape(shape), dtype=_dtype(dtype)), requires_grad)


def ones(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _make(np.ones(_shape(shape), dtype=_dtype(dtype)), requires_grad)


def empty(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _make(np.empty(_shape(shape), dtype=_dtype(dtype)), requires_grad)


def full(shape: Any, fill_value: float, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _make(np.full(_shape((shape,)), fill_value, dtype=_dtype(dtype)), requires_grad)


def zeros_like(x: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    xp = backend.get_array_module(x.data)
    return _make(xp.zeros_like(x.data, dtype=dtype), requires_grad)


def ones_like(x: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    xp = backend.get_array_module(x.data)
    return _make(xp.ones_like(x.data, dtype=dtype), requires_grad)


def full_like(x: Tensor, fill_value: float, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    xp = backend.get_array_module(x.data)
    return _make(xp.full_like(x.data, fill_value, dtype=dtype), requires_grad)


def eye(n: int, m: int | None = None, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _make(np.eye(n, m, dtype=_dtype(dtype)), requires_grad)


def arange(start: float, stop: float | None = None, step: float = 1, dtype: Any = None) -> Tensor:
    """Evenly spaced values in [start, stop); integer arguments give an integer tensor."""
    if stop is None:
        start, stop = 0, start
    data = np.arange(start, stop, step)
    if dtype is not None:
        data = data.astype(dtype)
    elif data.dtype.kind == "f":
        data = data.astype(backend.default_dtype())
    return _make(data, False)


def linspace(start: float, stop: float, num: int, dtype: Any = None) -> Tensor:
    return _make(np.linspace(start, stop, num, dtype=_dtype(dtype)), False)


def _rng(generator: np.random.Generator | None) -> np.random.Generator:
    return backend.generator() if generator is None else generator


def randn(*shape: Any, dtype: Any = None, requires_grad: bool = False, generator: Any = None) -> Tensor:
    """Samples of N(0, 1)."""
    data = _rng(generator).standard_normal(_shape(shape), dtype=np.float64).astype(_dtype(dtype))
    return _make(data, requires_grad)


def rand(*shape: Any, dtype: Any = None, requires_grad: bool = False, generator: Any = None) -> Tensor:
    """Samples of U[0, 1)."""
    data = _rng(generator).random(_shape(shape)).astype(_dtype(dtype))
    return _make(data, requires_grad)


def randint(low: int, high: int, shape: Any, generator: Any = None) -> Tensor:
    """Integers uniformly drawn from [low, high)."""
    return _make(_rng(generator).integers(low, high, size=_shape((shape,)), dtype=np.int64), False)


def randn_like(x: Tensor, generator: Any = None) -> Tensor:
    return randn(x.shape, dtype=x.dtype, generator=generator)
