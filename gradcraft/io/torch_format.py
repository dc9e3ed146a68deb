"""PyTorch-format state dicts in and out: safetensors files, and ``.pt`` / ``.pth`` via PyTorch.

gradcraft's :meth:`~gradcraft.nn.Module.state_dict` already uses PyTorch's names, shapes and
layouts, so a state dict moves between the two frameworks as it is, for equivalent
architectures:

==================  =============================================  =============================
layer               keys                                           layout
==================  =============================================  =============================
``Linear``          ``weight``, ``bias``                           W (out, in): y = x Wᵀ + b
``Conv2d``          ``weight``, ``bias``                           W (C_out, C_in/groups, kH, kW)
``BatchNorm1d/2d``  ``weight``, ``bias``, ``running_mean``,        γ, β, μ, σ² (C,); the step
                    ``running_var``, ``num_batches_tracked``       count a 0-d int64
``BasicBlock``      ``conv1``, ``bn1``, ``conv2``, ``bn2``,        torchvision's ``BasicBlock``
                    ``downsample.0``, ``downsample.1``
``Sequential``      ``0.weight``, ``3.running_mean``, …            position in the container
==================  =============================================  =============================

Parameter-free layers (activations, pooling, dropout, flatten) own no keys, so the positions
of a ``Sequential`` match as long as both models list the same layers in the same order.

Reading never unpickles arbitrary objects: safetensors files are plain arrays, and ``.pt`` /
``.pth`` / ``.bin`` files go through ``torch.load(path, weights_only=True)``, which only
rebuilds tensors and containers (it needs PyTorch; safetensors files need only the
``safetensors`` package).

::

    from gradcraft.io import load_torch_state_dict, save_torch_state_dict

    model.load_state_dict(load_torch_state_dict("resnet.safetensors"))   # weights from PyTorch
    save_torch_state_dict(model, "ours.safetensors")                       # and back:
    # torch_model.load_state_dict(safetensors.torch.load_file("ours.safetensors"))
"""

from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gradcraft.autograd.tensor import Tensor
from gradcraft.io.checkpoint import FORMAT as _CHECKPOINT_FORMAT
from gradcraft.io.checkpoint import atomic_write_bytes
from gradcraft.nn.module import IncompatibleKeys, Module, StateDictError

__all__ = ["TORCH_SUFFIXES", "load_torch_state_dict", "load_torch_weights", "save_torch_state_dict"]

TORCH_SUFFIXES = (".pt", ".pth", ".bin")
"""Suffixes read and written with ``torch.load`` / ``torch.save`` (PyTorch's own format)."""

_SUFFIXES = (".safetensors", *TORCH_SUFFIXES)


def _require_torch(path: Path) -> Any:
    try:
        import torch
    except ImportError as err:
        raise ImportError(
            f"Reading or writing {path.name} (PyTorch's own file format) needs PyTorch: pip install torch. "
            "safetensors files need no PyTorch: in PyTorch, "
            "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')"
        ) from err
    return torch


def _require_safetensors() -> Any:
    try:
        from safetensors import numpy as st_numpy
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            'safetensors files need the safetensors package: pip install "gradcraft[cli]"'
        ) from err
    return st_numpy


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise ValueError(f"Expected a weights file ending in {', '.join(_SUFFIXES)}. Received: path='{path}'")
    return suffix


def _torch_to_numpy(value: Any) -> np.ndarray:
    tensor = value.detach().cpu()
    if str(tensor.dtype) == "torch.bfloat16":  # NumPy has no bfloat16; float32 holds it exactly
        tensor = tensor.float()
    return tensor.numpy()


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    st_numpy = _require_safetensors()
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error type for malformed files
        raise ValueError(f"Expected a safetensors file in {path}. Received: unreadable ({err})") from err
    if meta.get("format") == _CHECKPOINT_FORMAT:
        raise ValueError(
            f"Expected a state dict file. Received: '{path}', the tensor file of a gradcraft checkpoint; "
            "read the checkpoint with gradcraft.io.load_checkpoint on its .json entry point, or pass "
            "its run directory to 'gradcraft export'"
        )
    try:
        arrays = st_numpy.load_file(str(path))
        # with ml_dtypes imported (onnx does), NumPy reads bfloat16 as a kind-"V" dtype: widen it
        return {k: v.astype(np.float32) if v.dtype.kind == "V" else v for k, v in arrays.items()}
    except TypeError as err:
        if "bfloat16" not in str(err):
            raise
    # bfloat16 tensors: NumPy cannot hold them, PyTorch can (and widens them to float32 exactly)
    try:
        from safetensors import torch as st_torch
    except ImportError as err:
        raise ImportError(
            f"{path.name} holds bfloat16 tensors, which NumPy cannot read; install PyTorch "
            "(pip install torch) to convert them to float32 while loading"
        ) from err
    return {k: _torch_to_numpy(v) for k, v in st_torch.load_file(str(path)).items()}


def _flat_tensors(obj: Any, path: Path, key: str | None, torch: Any) -> dict[str, np.ndarray]:
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            found = sorted(map(str, obj)) if isinstance(obj, Mapping) else type(obj).__name__
            raise KeyError(f"Expected a key '{key}' in {path}. Received: {found}")
        obj = obj[key]
    if not isinstance(obj, Mapping):
        raise ValueError(f"Expected a mapping of name -> tensor in {path}. Received: a {type(obj).__name__}")
    bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        nested = [str(k) for k, v in obj.items() if isinstance(v, Mapping)]
        hint = f"; pick the state dict with key= (candidates: {', '.join(nested)})" if nested else ""
        raise ValueError(
            f"Expected a mapping of name -> tensor in {path}. "
            f"Received: non-tensor values at {', '.join(bad[:8])}{hint}"
        )
    return {str(k): _torch_to_numpy(v) for k, v in obj.items()}


def load_torch_state_dict(path: str | os.PathLike[str], key: str | None = None) -> dict[str, np.ndarray]:
    """Read a PyTorch-format state dict: name → NumPy array.

    Args:
        path: a ``.safetensors`` file (as written by ``safetensors.torch.save_file`` or
            :func:`save_torch_state_dict`), or a ``.pt`` / ``.pth`` / ``.bin`` file written by
            ``torch.save(model.state_dict(), path)`` (read with ``weights_only=True``; needs
            PyTorch).
        key: for a ``torch.save``-d dict that holds more than the weights (e.g.
            ``{"model": state_dict, "optimizer": ...}``), the entry to read.

    Returns:
        The arrays in the file's order, with PyTorch's dtypes (bfloat16 widened to float32).
        Pass them to :meth:`gradcraft.nn.Module.load_state_dict`, which casts to the model's
        dtypes and reports missing, unexpected and wrong-shaped keys.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown suffix, a gradcraft checkpoint's tensor file, or contents that
            are not a flat mapping of tensors (naming the offending keys).
        ImportError: a PyTorch file without PyTorch installed.
    """
    path = Path(path)
    suffix = _check_suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    if suffix == ".safetensors":
        if key is not None:
            raise ValueError(f"Expected key=None for a safetensors file (it is flat). Received: key={key!r}")
        return _read_safetensors(path)
    torch = _require_torch(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError) as err:  # not a torch.save file (truncated, another format)
        raise ValueError(
            f"Expected a file written by torch.save in {path}. Received: unreadable ({err})"
        ) from err
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"Expected only tensors and containers in {path}, as torch.save(model.state_dict(), path) "
            "writes. Received: a file that torch.load(weights_only=True) refuses (a whole pickled model, "
            "or not a torch.save file); save model.state_dict() instead of the model"
        ) from err
    return _flat_tensors(obj, path, key, torch)


def load_torch_weights(
    model: Module, path: str | os.PathLike[str], strict: bool = True, key: str | None = None
) -> IncompatibleKeys:
    """``model.load_state_dict(load_torch_state_dict(path, key), strict)``, with the file named
    in the mismatch report.

    Raises:
        StateDictError: listing every missing and unexpected key and every shape mismatch (the
            model's shape and the file's), headed by the file's path.
    """
    state = load_torch_state_dict(path, key)
    try:
        return model.load_state_dict(state, strict=strict)
    except StateDictError as err:
        raise StateDictError(f"{path}: {err}") from err


def _arrays_of(source: Module | Mapping[str, Any]) -> OrderedDict[str, np.ndarray]:
    if isinstance(source, Module):
        state: Mapping[str, Any] = source.state_dict()
    elif isinstance(source, Mapping):
        state = source
    else:
        raise TypeError(
            f"Expected a Module or a mapping of name -> array. Received: type={type(source).__name__}"
        )
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for name, value in state.items():
        arr = np.asarray(value.numpy() if isinstance(value, Tensor) else value)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"Expected numeric arrays. Received: '{name}' of dtype {arr.dtype}")
        # safetensors 0.8 writes non-C-contiguous arrays wrongly; ascontiguousarray makes 0-d arrays 1-d
        out[str(name)] = np.ascontiguousarray(arr).reshape(arr.shape)
    return out


def save_torch_state_dict(source: Module | Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a state dict in PyTorch's layout, atomically, for ``torch_model.load_state_dict``.

    Args:
        source: a gradcraft model (its :meth:`~gradcraft.nn.Module.state_dict`) or a mapping of
            name → array.
        path: ``.safetensors`` (read in PyTorch with ``safetensors.torch.load_file``; needs no
            PyTorch here) or ``.pt`` / ``.pth`` / ``.bin`` (``torch.save`` of an ordered dict of
            tensors, read with ``torch.load(path, weights_only=True)``; needs PyTorch).

    Returns:
        The path written.
    """
    path = Path(path)
    suffix = _check_suffix(path)
    arrays = _arrays_of(source)
    if suffix == ".safetensors":
        payload = _require_safetensors().save(arrays, metadata={"format": "pt"})
    else:
        torch = _require_torch(path)
        buffer = io.BytesIO()
        torch.save(OrderedDict((k, torch.from_numpy(v.copy())) for k, v in arrays.items()), buffer)
        payload = buffer.getvalue()
    return atomic_write_bytes(path, payload)
