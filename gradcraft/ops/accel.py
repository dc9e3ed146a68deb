"""Optional compiled kernels for the memory-bound loops that NumPy runs in many passes.

NumPy evaluates ``y = max(γ·(x − μ)·s + β, 0)`` or a Winograd tile transform as a chain of
whole-array passes, each reading and writing the full tensor; on a CNN step these passes, not
the GEMMs, are what separates a NumPy framework from PyTorch's fused kernels. When Numba is
installed (the ``fast`` extra) the ops in :mod:`gradcraft.ops.pooling`,
:mod:`gradcraft.ops.normalization`, :mod:`gradcraft.ops.conv` (Winograd transforms, im2col
from the unpadded input and its adjoint col2im), :mod:`gradcraft.ops.activation` (ReLU and
the residual add + ReLU with a 1-bit mask), :mod:`gradcraft.ops.linear` (bias + ReLU after a
product) and :mod:`gradcraft.ops.loss` (the row reductions of softmax cross-entropy) hand
those loops to the single-pass kernels in :mod:`gradcraft.ops.kernels`; without it they run
the NumPy code, which gives the same results (to float rounding) and is what the kernels are
tested against.

The kernels are compiled on first use (a few seconds, cached on disk afterwards), release the
GIL, and run on the worker threads of :func:`gradcraft.ops.conv.parallel_for`, so the thread
count is the one set for NumPy's BLAS. They work on NumPy arrays only; CuPy arrays always take
the array-module path.

Switches: the environment variable ``GRADCRAFT_NUMBA=0`` turns the kernels off for a process;
:func:`use_numba` turns them on or off in a ``with`` block (tests run both paths).
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "flat_order",
    "flat_views",
    "kernels",
    "layout",
    "map_bits",
    "map_rows",
    "numba_available",
    "numba_enabled",
    "shorten_blas_spin",
    "tune_allocator",
    "use_numba",
]

_ENV = "GRADCRAFT_NUMBA"


class _State:
    enabled: bool | None = None  # None: decided from the environment on first use
    available: bool | None = None


def numba_available() -> bool:
    """True when Numba can be imported (checked once)."""
    if _State.available is None:
        try:
            import numba  # noqa: F401
        except ImportError:
            _State.available = False
        else:
            _State.available = True
    return _State.available


def numba_enabled() -> bool:
    """True when the compiled kernels are used: Numba is installed and not switched off."""
    if _State.enabled is None:
        _State.enabled = os.environ.get(_ENV, "1").strip().lower() not in {"0", "false", "no", "off"}
    return _State.enabled and numba_available()


@contextlib.contextmanager
def use_numba(enabled: bool) -> Iterator[None]:
    """Use (``True``) or bypass (``False``) the compiled kernels inside the block."""
    before = _State.enabled
    _State.enabled = bool(enabled)
    try:
        yield
    finally:
        _State.enabled = before


def kernels(family: str, *arrays: Any) -> ModuleType | None:
    """The kernel module ``gradcraft.ops.kernels.<family>``, or None when the kernels are off,
    any of ``arrays`` is not a NumPy array (CuPy arrays use the array-module code) or is
    float16 (Numba has no half-precision arithmetic)."""
    if not numba_enabled():
        return None
    for a in arrays:
        if not isinstance(a, np.ndarray) or a.dtype == _FLOAT16:
            return None
    module = _FAMILIES.get(family)
    if module is None:
        module = _FAMILIES[family] = importlib.import_module(f"gradcraft.ops.kernels.{family}")
    return module


#: Kernel modules by family, once imported (the lookup runs between every two GEMMs of a step,
#: when the interpreter's own data has just been evicted from the caches).
_FAMILIES: dict[str, ModuleType] = {}
_FLOAT16 = np.dtype(np.float16)


def flat_order(a: Any) -> list[int] | None:
    """The axis order in which ``a`` is C-contiguous (``a.transpose(order)`` needs no copy), or
    None when ``a`` is not dense."""
    if a.flags.c_contiguous:
        return list(range(a.ndim))
    order = sorted(range(a.ndim), key=lambda axis: -abs(a.strides[axis]))
    return order if a.transpose(order).flags.c_contiguous else None


def layout(a: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``a``'s shape and strides counted in elements (equal for arrays of different dtypes that
    lay out the same logical elements in the same order)."""
    return a.shape, tuple(s // a.itemsize for s in a.strides)


def flat_views(*arrays: Any) -> list[Any] | None:
    """1-D views of arrays that share one memory layout, element i of each being the same
    logical element; None unless every array is dense (contiguous in some axis order) with the
    same strides counted in elements (the dtypes may differ: a float array and its bool mask)."""
    first = layout(arrays[0])
    if any(layout(a) != first for a in arrays):
        return None
    order = flat_order(arrays[0])
    if order is None:
        return None
    return [a.transpose(order).reshape(-1) for a in arrays]


def map_bits(kernel: Any, *arrays: Any) -> None:
    """``kernel(*blocks, bits_block)`` over blocks of equal-length 1-D arrays and the bit array
    (the last argument) that packs one bit per element of them (8 per byte), on the worker
    threads; blocks start at multiples of 8 elements so that no byte of ``bits`` is shared."""
    from gradcraft.ops import conv

    *flat, bits = arrays
    chunks = conv.sample_chunks(np, bits.shape[0], 8 * flat[0].itemsize)

    def body(i: int, _scratch: dict) -> None:
        lo, hi = chunks[i]
        kernel(*[a[8 * lo : 8 * hi] for a in flat], bits[lo:hi])

    conv.parallel_for(np, len(chunks), body)


def map_rows(kernel: Any, *arrays: Any, shared: tuple[Any, ...] = ()) -> None:
    """``kernel(*row_blocks, *shared)`` over blocks of rows (axis 0) of ``arrays``, which all
    have the same number of rows, on the worker threads; ``shared`` arrays are passed whole.
    Below ``PARALLEL_MIN_BYTES`` the kernel runs once, on the calling thread."""
    from gradcraft.ops import conv

    first = arrays[0]
    if first.nbytes < conv.PARALLEL_MIN_BYTES:
        kernel(*arrays, *shared)
        return
    chunks = conv.sample_chunks(np, first.shape[0], first.nbytes // max(1, first.shape[0]))

    def body(i: int, _scratch: dict) -> None:
        lo, hi = chunks[i]
        kernel(*[a[lo:hi] for a in arrays], *shared)

    conv.parallel_for(np, len(chunks), body)


class _Allocator:
    tuned = False


def tune_allocator() -> bool:
    """Keep freed large arrays in the C heap for reuse (glibc only; idempotent).

    By default glibc serves every allocation above ~128 KiB–32 MiB with a fresh ``mmap`` and
    returns it on ``free``, so each activation of a training step costs the kernel a page
    fault and a zero-fill per 4 KiB page (≈ 13,000 faults and 50–60 ms of system time per
    step of the CNN recipe). Raising the mmap and trim thresholds lets the next step reuse the
    same memory; the resident size then stays at its peak instead of breathing with each
    step. Called by :meth:`gradcraft.train.Trainer.fit`; ``GRADCRAFT_MALLOC_TUNING=0`` turns
    it off. Returns True when the setting was applied.
    """
    if _Allocator.tuned:
        return True
    if os.environ.get("GRADCRAFT_MALLOC_TUNING", "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    # 32 MiB is the largest mmap threshold glibc accepts on 64-bit systems
    ok = mallopt(m_mmap_threshold, 1 << 25) == 1 and mallopt(m_trim_threshold, 1 << 30) == 1
    _Allocator.tuned = ok
    return ok


#: The spin of OpenBLAS's idle threads, as the exponent n of their 2^n cycles; the same value
#: ``gradcraft/__init__.py`` puts in the environment before NumPy loads.
BLAS_THREAD_TIMEOUT = 20


def shorten_blas_spin(libraries: list[Any]) -> list[str]:
    """Give the OpenBLAS of ``libraries`` (threadpoolctl controllers) the short spin of idle
    threads, ``OPENBLAS_THREAD_TIMEOUT`` = :data:`BLAS_THREAD_TIMEOUT`, when NumPy loaded it
    before gradcraft could set the variable; returns the paths of the libraries changed.

    OpenBLAS reads its environment once, when it is loaded; unset, its idle threads spin for
    2^28 cycles (~0.1 s) after every threaded call, and on two cores such a thread competes
    with gradcraft's own worker threads: forward + backward of a 128-channel 3×3 convolution
    at batch 32 took 6.0 + 15.6 ms with NumPy imported first against 3.7 + 8.2 ms with the
    short spin. A value OpenBLAS did read (set by the user or by gradcraft) is left alone.
    Otherwise the variable is set (unless already in the environment), OpenBLAS re-reads its
    environment (``openblas_read_env``) and its thread pool is shut down
    (``blas_thread_shutdown_``), to be started again, with the new spin, by the next threaded
    call. Called once, before gradcraft first runs its worker threads; it must not run while
    another thread is inside a BLAS call.
    """
    import ctypes

    changed = []
    for lib in libraries:
        if getattr(lib, "internal_api", "") != "openblas":
            continue
        try:
            so = ctypes.CDLL(lib.filepath)
            read_timeout, read_env, shutdown = (
                so.openblas_thread_timeout, so.openblas_read_env, so.blas_thread_shutdown_
            )
        except (OSError, AttributeError):  # another build without these symbols
            continue
        if read_timeout() != 0:
            continue
        os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", str(BLAS_THREAD_TIMEOUT))
        read_env()
        shutdown()
        changed.append(str(lib.filepath))
    return changed
