"""The one place that knows where arrays live and how random numbers are drawn.

Everything else asks this module for its array module (``xp``), the default floating dtype
and the random generator, so the same op code runs on NumPy (CPU) or CuPy (GPU).

* ``get_array_module(*arrays)`` returns ``numpy`` or ``cupy`` for the given arrays
  (Chainer's convention: op code writes ``xp = get_array_module(x)``).
* ``default_dtype()`` is ``float32`` unless changed by ``set_default_dtype``.
* ``manual_seed(seed)`` reseeds the global generator returned by ``generator()``; every random
  draw in the library (init, dropout, shuffling, augmentation) comes from an explicit
  ``numpy.random.Generator``, so runs are reproducible and resumable.
* ``device("cuda")`` names a device and ``to_device(array, device)`` moves an array there
  (``cupy.asarray`` to a GPU, ``.get()`` back to the host). Random numbers are still drawn on
  the host from the NumPy generators and then moved, so a run draws the same numbers on CPU
  and GPU and a checkpoint holds one generator state; checkpoints always store NumPy arrays.
  GPUs need CuPy: ``pip install 'gradcraft[gpu]'``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Device",
    "Generator",
    "as_array",
    "cuda_available",
    "default_dtype",
    "device",
    "device_of",
    "generator",
    "is_device",
    "get_array_module",
    "get_rng_state",
    "manual_seed",
    "set_default_dtype",
    "set_rng_state",
    "to_device",
]

_FLOAT_DTYPES = (np.float16, np.float32, np.float64)
_ndarray = np.ndarray
_default_dtype: np.dtype = np.dtype(np.float32)

Generator = np.random.Generator
_generator: np.random.Generator = np.random.default_rng(0)


def get_array_module(*arrays: Any) -> Any:
    """Return the array module (``numpy`` or ``cupy``) that owns ``arrays``.

    NumPy is returned unless one of the arrays is a CuPy array.
    """
    for a in arrays:
        kind = type(a)
        if kind is _ndarray:  # the common case, without a string test
            continue
        if kind.__module__.startswith("cupy"):
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


# ---------------------------------------------------------------------------- devices
_GPU_EXTRA = "pip install 'gradcraft[gpu]'"


@dataclass(frozen=True)
class Device:
    """Where arrays live: ``cpu`` (NumPy) or ``cuda`` (CuPy), optionally GPU number ``index``."""

    type: str
    index: int | None = None

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"


def device(spec: str | Device = "cpu") -> Device:
    """Parse a device name: ``"cpu"``, ``"cuda"`` (the current GPU) or ``"cuda:N"``.

    Only the name is checked; moving data there (:func:`to_device`, ``model.to("cuda")``)
    checks that CuPy and the GPU are present.

    Raises:
        ValueError: for any other name.
    """
    if isinstance(spec, Device):
        return spec
    text = spec.strip().lower() if isinstance(spec, str) else ""
    kind, _, index = text.partition(":")
    if kind == "cpu" and not index:
        return Device("cpu")
    if kind == "cuda" and (not index or index.isdigit()):
        return Device("cuda", int(index) if index else None)
    raise ValueError(f"Expected a device 'cpu', 'cuda' or 'cuda:N'. Received: device={spec!r}")


def is_device(value: Any) -> bool:
    """Whether ``value`` names a device (a :class:`Device`, or a string :func:`device` parses)."""
    if isinstance(value, Device):
        return True
    if not isinstance(value, str):
        return False
    try:
        device(value)
    except ValueError:
        return False
    return True


def _cupy_for(dev: Device) -> Any:
    """CuPy, after checking that ``dev``'s GPU exists."""
    try:
        import cupy
    except ImportError as err:
        raise ImportError(f"Device '{dev}' needs CuPy and a CUDA GPU: {_GPU_EXTRA}") from err
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except cupy.cuda.runtime.CUDARuntimeError:  # no driver, or no device visible
        count = 0
    if count == 0:
        raise RuntimeError(f"Expected a CUDA device for device '{dev}'. Received: CuPy found no GPU")
    if dev.index is not None and dev.index >= count:
        raise RuntimeError(f"Expected a CUDA device index below {count}. Received: device='{dev}'")
    return cupy


def cuda_available() -> bool:
    """Whether CuPy is installed and sees at least one CUDA GPU."""
    try:
        _cupy_for(Device("cuda"))
    except (ImportError, RuntimeError):
        return False
    return True


def device_of(array: Any) -> Device:
    """The device an array lives on (``cuda:N`` for a CuPy array on GPU N, else ``cpu``)."""
    if type(array).__module__.startswith("cupy"):
        return Device("cuda", int(array.device.id))
    return Device("cpu")


def to_device(array: Any, dev: str | Device) -> Any:
    """``array`` on device ``dev``: the array itself when it already lives there (no copy), a
    host copy (``.get()``) for ``cpu``, ``cupy.asarray`` on the GPU for ``cuda``.

    Raises:
        ValueError: for an unknown device name.
        ImportError: naming ``pip install 'gradcraft[gpu]'`` when CuPy is missing.
        RuntimeError: when CuPy finds no such CUDA device.
    """
    target = device(dev)
    on_gpu = type(array).__module__.startswith("cupy")
    if target.type == "cpu":
        return array.get() if on_gpu else array
    cupy = _cupy_for(target)
    index = int(cupy.cuda.Device().id) if target.index is None else target.index
    if on_gpu and int(array.device.id) == index:
        return array
    with cupy.cuda.Device(index):
        return cupy.asarray(array)
