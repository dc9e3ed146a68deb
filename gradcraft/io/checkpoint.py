"""Checkpoints on disk: arrays in safetensors, everything else in a small JSON file. No pickle.

A checkpoint named ``run/checkpoints/last`` is two files:

* ``last.json`` — the entry point: a format tag, the name and SHA-256 of the tensor file, and
  the caller's metadata (epoch, step, learning rates, RNG states, the recipe, ...);
* ``last.<sha>.safetensors`` — every array, named by the caller.

Writes are atomic and crash-safe: the tensor file is written under a fresh, content-addressed
name (temporary file in the same directory, ``fsync``, ``os.replace``), then the JSON file is
replaced the same way, then the directory is ``fsync``-ed, and only then is the previous tensor
file deleted. A process killed at any moment leaves either the old or the new checkpoint
complete, never a mixture.

Nested state (an optimizer's ``state_dict``, RNG states, a callback's counters) is stored with
:func:`pack_state` / :func:`unpack_state`: arrays go to the tensor file under dotted keys and
the JSON keeps a reference ``{"__array__": key}`` in their place; tuples, dicts with non-string
keys and NumPy scalars are tagged so they come back with the same types.

safetensors is an optional dependency (``pip install "gradcraft[cli]"``); it is imported only
when a checkpoint is written or read. safetensors 0.8 writes non-C-contiguous arrays wrongly,
so every array passes through :func:`numpy.ascontiguousarray` first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradcraft.autograd.tensor import Tensor

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "atomic_write_bytes",
    "atomic_write_text",
    "checkpoint_exists",
    "load_checkpoint",
    "pack_state",
    "save_checkpoint",
    "unpack_state",
]

FORMAT = "gradcraft.checkpoint"
FORMAT_VERSION = 1

_ARRAY = "__array__"
_TUPLE = "__tuple__"
_ITEMS = "__items__"
_SCALAR = "__scalar__"
_DTYPE = "__dtype__"
_TAGS = (_ARRAY, _TUPLE, _ITEMS, _SCALAR)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or read (missing, corrupt, foreign or mismatched).

    Attributes:
        path: the checkpoint file the problem is about.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass
class Checkpoint:
    """A checkpoint read back by :func:`load_checkpoint`.

    Attributes:
        path: the JSON entry-point file.
        arrays: name → NumPy array, as passed to :func:`save_checkpoint`.
        meta: the JSON metadata, as passed to :func:`save_checkpoint`.
    """

    path: Path
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- atomic files
def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    A temporary file in the same directory is written, flushed and ``fsync``-ed, renamed over
    ``path`` with :func:`os.replace`, and the directory is ``fsync``-ed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


# ---------------------------------------------------------------------------- nested state
def pack_state(obj: Any, prefix: str = "") -> tuple[Any, dict[str, np.ndarray]]:
    """Split nested state into a JSON-serialisable tree and a flat dict of arrays.

    Arrays (NumPy, or anything with ``__array__`` such as a gradcraft Tensor's ``data``) are
    replaced by ``{"__array__": key}`` where ``key`` is their dotted path under ``prefix``.
    Tuples, dicts whose keys are not all strings, and NumPy scalars are tagged so that
    :func:`unpack_state` restores them with their types.

    Returns:
        ``(tree, arrays)``.

    Raises:
        TypeError: for values that are neither arrays, containers nor JSON scalars (naming
            the path of the value).
    """
    arrays: dict[str, np.ndarray] = {}

    def key_of(path: str) -> str:
        return f"{prefix}.{path}" if prefix and path else (prefix or path or "value")

    def walk(value: Any, path: str) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, np.generic):
            return value
        if isinstance(value, np.generic):
            return {_SCALAR: value.item(), _DTYPE: value.dtype.str}
        if isinstance(value, Tensor):
            return walk(value.numpy(), path)
        if isinstance(value, np.ndarray) or hasattr(value, "__array_interface__"):
            key = key_of(path)
            if key in arrays:
                raise ValueError(f"Two arrays map to the same checkpoint key '{key}'")
            arrays[key] = np.asarray(value)
            return {_ARRAY: key}
        if hasattr(value, "get") and type(value).__module__.startswith("cupy"):
            return walk(value.get(), path)
        if isinstance(value, Mapping):
            items = list(value.items())
            if all(isinstance(k, str) and k not in _TAGS and k != _DTYPE for k, _ in items):
                return {k: walk(v, f"{path}.{k}" if path else k) for k, v in items}
            packed = []
            for k, v in items:
                if not isinstance(k, (str, int, bool)) and k is not None:
                    raise TypeError(
                        f"Expected str or int keys in checkpoint state at '{key_of(path)}'. "
                        f"Received: key={k!r}"
                    )
                packed.append([k, walk(v, f"{path}.{k}" if path else str(k))])
            return {_ITEMS: packed}
        if isinstance(value, tuple):
            return {_TUPLE: [walk(v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [walk(v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(value)]
        raise TypeError(
            f"Cannot store a {type(value).__name__} in a checkpoint (at '{key_of(path)}'); "
            "expected arrays, numbers, strings, lists, tuples and dicts"
        )

    return walk(obj, ""), arrays


def unpack_state(tree: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """Inverse of :func:`pack_state`.

    Raises:
        KeyError: if the tree refers to an array that ``arrays`` does not hold.
    """
    if isinstance(tree, list):
        return [unpack_state(v, arrays) for v in tree]
    if isinstance(tree, dict):
        if _ARRAY in tree and len(tree) == 1:
            key = tree[_ARRAY]
            if key not in arrays:
                raise KeyError(f"checkpoint refers to array '{key}', which the tensor file does not hold")
            return arrays[key]
        if _TUPLE in tree and len(tree) == 1:
            return tuple(unpack_state(v, arrays) for v in tree[_TUPLE])
        if _ITEMS in tree and len(tree) == 1:
            return {k: unpack_state(v, arrays) for k, v in tree[_ITEMS]}
        if _SCALAR in tree and len(tree) == 2 and _DTYPE in tree:
            return np.dtype(tree[_DTYPE]).type(tree[_SCALAR])
        return {k: unpack_state(v, arrays) for k, v in tree.items()}
    return tree


# ---------------------------------------------------------------------------- safetensors
def _safetensors_numpy() -> Any:
    try:
        from safetensors import numpy as st_numpy
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError('Checkpoints need the safetensors package: pip install "gradcraft[cli]"') from err
    return st_numpy


def _json_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p if p.suffix == ".json" else p.with_name(p.name + ".json")


def checkpoint_exists(path: str | os.PathLike[str]) -> bool:
    """Whether a checkpoint entry point (``path`` or ``path.json``) exists."""
    return _json_path(path).is_file()


def save_checkpoint(
    path: str | os.PathLike[str],
    arrays: Mapping[str, Any],
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically and return the path of its JSON entry point.

    Args:
        path: where to write; ``run/ckpt/last`` and ``run/ckpt/last.json`` both write
            ``run/ckpt/last.json`` and ``run/ckpt/last.<sha>.safetensors``.
        arrays: name → array (NumPy or array-like). Each is made C-contiguous before saving.
        meta: JSON-serialisable metadata (use :func:`pack_state` for nested state).

    Raises:
        CheckpointError: if an array has a dtype safetensors cannot store or the metadata is
            not JSON-serialisable.
    """
    st_numpy = _safetensors_numpy()
    json_path = _json_path(path)
    stem = json_path.name[: -len(".json")]
    contiguous: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        host = value.get() if type(value).__module__.startswith("cupy") else value
        arr = np.asarray(host.numpy() if isinstance(host, Tensor) else host)
        if arr.dtype.kind not in "biuf":
            raise CheckpointError(
                json_path, f"array '{name}' has dtype {arr.dtype}, which safetensors cannot store"
            )
        # ascontiguousarray turns 0-d arrays into 1-d ones: reshape back
        contiguous[name] = np.ascontiguousarray(arr).reshape(arr.shape)
    try:
        payload = st_numpy.save(contiguous, metadata={"format": FORMAT, "version": str(FORMAT_VERSION)})
    except Exception as err:
        raise CheckpointError(json_path, f"could not serialise the arrays: {err}") from err
    digest = hashlib.sha256(payload).hexdigest()
    tensors_name = f"{stem}.{digest[:16]}.safetensors"
    document = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "tensors": tensors_name,
        "sha256": digest,
        "num_arrays": len(contiguous),
        "meta": dict(meta or {}),
    }
    try:
        text = json.dumps(document, indent=1, sort_keys=False)
    except (TypeError, ValueError) as err:
        raise CheckpointError(json_path, f"metadata is not JSON-serialisable: {err}") from err
    atomic_write_bytes(json_path.with_name(tensors_name), payload)
    atomic_write_text(json_path, text)
    # Only now that the new entry point is durable may the previous tensor files go.
    for old in json_path.parent.glob(f"{stem}.*.safetensors"):
        if old.name != tensors_name and old.name[len(stem) + 1 :].count(".") == 1:
            with contextlib.suppress(OSError):
                old.unlink()
    return json_path


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and verify a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the JSON entry point (``last.json``) or its name without ``.json``.

    Raises:
        CheckpointError: naming the path, if the file is missing, is not a gradcraft
            checkpoint (foreign JSON, a safetensors or pickle file), was written by a newer
            format version, or its tensor file is missing or does not match its checksum.
    """
    p = Path(path)
    if p.suffix == ".safetensors":
        raise CheckpointError(
            p, "this is a tensor file; pass the checkpoint's .json entry point written next to it"
        )
    json_path = _json_path(p)
    if not json_path.is_file():
        raise CheckpointError(json_path, "no such checkpoint file")
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(json_path, f"not a gradcraft checkpoint (unreadable JSON: {err})") from err
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(json_path, f"not a gradcraft checkpoint (expected format '{FORMAT}')")
    version = document.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            json_path,
            f"checkpoint format version {version!r} is not supported (this gradcraft reads up to "
            f"{FORMAT_VERSION}); upgrade gradcraft",
        )
    tensors_name = document.get("tensors")
    digest = document.get("sha256")
    if not isinstance(tensors_name, str) or "/" in tensors_name or "\\" in tensors_name or not digest:
        raise CheckpointError(json_path, "corrupt checkpoint: the entry point does not name a tensor file")
    tensors_path = json_path.with_name(tensors_name)
    if not tensors_path.is_file():
        raise CheckpointError(tensors_path, f"tensor file of checkpoint {json_path} is missing")
    payload = tensors_path.read_bytes()
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(tensors_path, "corrupt checkpoint: the tensor file does not match its SHA-256")
    st_numpy = _safetensors_numpy()
    try:
        arrays = dict(st_numpy.load(payload))
    except Exception as err:
        raise CheckpointError(tensors_path, f"corrupt checkpoint: {err}") from err
    meta = document.get("meta", {})
    if not isinstance(meta, dict):
        raise CheckpointError(json_path, "corrupt checkpoint: 'meta' is not an object")
    return Checkpoint(path=json_path, arrays=arrays, meta=meta)
