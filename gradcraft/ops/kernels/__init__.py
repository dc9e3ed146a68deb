"""Numba kernels behind :mod:`gradcraft.ops.accel` (imported only when Numba is installed).

Each module holds the single-pass loops of one op family. Kernels are compiled with
``nogil=True`` (they run on the worker threads of :func:`gradcraft.ops.conv.parallel_for`),
``cache=True`` (compiled once per machine), NumPy's division semantics (``x / 0`` gives
inf or NaN instead of raising, which also lets loops with a division vectorise: Python's
zero check blocks it, at about 5× the cost in the Adam update) and the floating-point
relaxations that allow vectorised sums (reassociation, contraction) but keep IEEE NaN and
infinity semantics, so a diverging run still produces the NaN that stops it.

Numba's disk cache is keyed on each kernel's source file, not on these options: after
changing them, delete the ``*.nbi`` / ``*.nbc`` files in this package's ``__pycache__``, or
an old compilation may still be loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: LLVM fast-math flags: reorder and fuse arithmetic, but never assume values are finite.
FASTMATH = {"reassoc", "contract", "nsz"}


def jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Compile ``fn`` as a GIL-free, disk-cached Numba kernel."""
    import numba

    return numba.njit(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")(fn)
