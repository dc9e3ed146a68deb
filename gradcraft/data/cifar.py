"""Readers for CIFAR-10 and CIFAR-100, in the binary and the "python" (pickle) formats.

Binary format (``cifar-10-batches-bin/*.bin``, ``cifar-100-binary/*.bin``): fixed-size records,
one per image, with no header::

    CIFAR-10 :  <1 byte label>               <3072 bytes pixels>   (3073 bytes per record)
    CIFAR-100:  <1 byte coarse> <1 byte fine> <3072 bytes pixels>  (3074 bytes per record)

The 3072 pixel bytes are the 1024 red, then 1024 green, then 1024 blue values of a 32 × 32
image in row-major order, which is exactly ``(3, 32, 32)`` NCHW. A file whose size is not a
whole number of records, or that holds a label outside ``[0, K)``, raises
:class:`~gradcraft.data.DatasetError`.

Python format (``cifar-10-batches-py/data_batch_1`` …): pickled dicts with ``data`` (``uint8``
array ``(N, 3072)``) and ``labels`` / ``fine_labels`` / ``coarse_labels`` lists. These are read by
:mod:`gradcraft.data.safe_pickle`, which interprets plain data and never unpickles.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradcraft.data._io import read_bytes
from gradcraft.data.dataset import ArrayDataset
from gradcraft.data.errors import DatasetError
from gradcraft.data.safe_pickle import load_pickle

__all__ = [
    "CIFAR100_CLASSES",
    "CIFAR100_COARSE_CLASSES",
    "CIFAR10_CLASSES",
    "load_cifar_binary",
    "load_cifar_python",
    "read_cifar_binary",
    "read_cifar_python_batch",
]

_PIXELS = 3 * 32 * 32

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

CIFAR100_CLASSES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle",
    "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear",
    "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon",
    "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail",
    "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe",
    "whale", "willow_tree", "wolf", "woman", "worm",
]

CIFAR100_COARSE_CLASSES = [
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
]


def read_cifar_binary(path: str | os.PathLike, label_bytes: int = 1,
                      num_classes: Sequence[int] = (10,)) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR binary file.

    Args:
        path: the ``.bin`` file (gzipped works too).
        label_bytes: 1 for CIFAR-10, 2 for CIFAR-100 (coarse, fine).
        num_classes: the class count of each label byte, e.g. ``(20, 100)`` for CIFAR-100.

    Returns:
        ``(x, labels)``: ``x`` uint8 ``(N, 3, 32, 32)``, ``labels`` int64 ``(N, label_bytes)``.

    Raises:
        DatasetError: if the size is not a positive multiple of the record size or a label is
            out of range.
    """
    if label_bytes not in (1, 2) or len(num_classes) != label_bytes:
        raise ValueError(
            f"Expected label_bytes in (1, 2) with one class count per byte. "
            f"Received: label_bytes={label_bytes}, num_classes={tuple(num_classes)}"
        )
    data = read_bytes(path)
    record = label_bytes + _PIXELS
    if len(data) == 0 or len(data) % record:
        raise DatasetError(
            f"Expected a CIFAR binary file of whole {record}-byte records in '{path}'. "
            f"Received: {len(data)} bytes ({len(data) / record:.3f} records; truncated or not CIFAR)"
        )
    rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
    labels = rows[:, :label_bytes].astype(np.int64)
    for j, k in enumerate(num_classes):
        hi = int(labels[:, j].max())
        if hi >= k:
            raise DatasetError(
                f"Expected labels in [0, {k}) in byte {j} of every record in '{path}'. "
                f"Received: a label {hi} (not a CIFAR file with this layout?)"
            )
    x = rows[:, label_bytes:].reshape(-1, 3, 32, 32).copy()
    return x, labels


def _read_names(path: Path, expected: list[str]) -> list[str]:
    """Class names from a ``*.txt`` meta file when present and consistent, else ``expected``."""
    try:
        names = [line.strip() for line in path.read_text("utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError):
        return list(expected)
    return names if len(names) == len(expected) else list(expected)


def load_cifar_binary(folder: str | os.PathLike, split: str = "train", coarse: bool = False) -> ArrayDataset:
    """Load CIFAR-10 (``cifar-10-batches-bin``) or CIFAR-100 (``cifar-100-binary``) from a folder.

    The variant is recognised from the files: ``data_batch_{1..5}.bin`` / ``test_batch.bin``
    (CIFAR-10) or ``train.bin`` / ``test.bin`` (CIFAR-100).

    Args:
        folder: the extracted folder.
        split: ``"train"`` or ``"test"``.
        coarse: CIFAR-100 only: use the 20 superclass labels instead of the 100 fine ones.

    Returns:
        ``ArrayDataset`` with ``x`` uint8 ``(N, 3, 32, 32)`` and ``y`` int64 ``(N,)``.
    """
    folder = Path(folder)
    _check_split(split)
    if (folder / "train.bin").exists() or (folder / "test.bin").exists():
        x, labels = read_cifar_binary(folder / f"{split}.bin", 2, (20, 100))
        if coarse:
            classes = _read_names(folder / "coarse_label_names.txt", CIFAR100_COARSE_CLASSES)
            return ArrayDataset(x, labels[:, 0].copy(), classes, f"cifar100-coarse/{split}")
        classes = _read_names(folder / "fine_label_names.txt", CIFAR100_CLASSES)
        return ArrayDataset(x, labels[:, 1].copy(), classes, f"cifar100/{split}")
    files = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    parts = [read_cifar_binary(folder / f, 1, (10,)) for f in files]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1][:, 0] for p in parts])
    return ArrayDataset(x, y, _read_names(folder / "batches.meta.txt", CIFAR10_CLASSES), f"cifar10/{split}")


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"Expected split 'train' or 'test'. Received: split={split!r}")


def _get(d: dict, key: str) -> Any:
    for k in (key, key.encode()):
        if k in d:
            return d[k]
    return None


def read_cifar_python_batch(path: str | os.PathLike, label_key: str = "labels",
                            num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Read one pickled CIFAR batch safely (no unpickling; see :mod:`gradcraft.data.safe_pickle`).

    Args:
        path: e.g. ``cifar-10-batches-py/data_batch_1`` or ``cifar-100-python/train``.
        label_key: ``"labels"`` (CIFAR-10), ``"fine_labels"`` or ``"coarse_labels"`` (CIFAR-100).
        num_classes: labels must lie in ``[0, num_classes)``.

    Returns:
        ``(x, y)``: uint8 ``(N, 3, 32, 32)`` and int64 ``(N,)``.
    """
    obj = load_pickle(path)
    if not isinstance(obj, dict):
        raise DatasetError(f"Expected a dict in the CIFAR batch '{path}'. Received: {type(obj).__name__}")
    data, labels = _get(obj, "data"), _get(obj, label_key)
    is_array = isinstance(data, np.ndarray)
    if not is_array or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        got = f"shape={data.shape}, dtype={data.dtype}" if is_array else type(data).__name__
        raise DatasetError(f"Expected 'data' as a uint8 array (N, 3072) in '{path}'. Received: {got}")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        y = np.zeros((0, 0))
    if y.ndim != 1 or y.shape[0] != data.shape[0]:
        raise DatasetError(
            f"Expected {data.shape[0]} integer '{label_key}' in '{path}'. Received: "
            f"{'nothing' if labels is None else f'an array of shape {y.shape}'}"
        )
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DatasetError(
            f"Expected '{label_key}' in [0, {num_classes}) in '{path}'. Received: [{y.min()}, {y.max()}]"
        )
    return data.reshape(-1, 3, 32, 32).copy(), y


def _python_names(path: Path, key: str, fallback: list[str]) -> list[str]:
    try:
        meta = load_pickle(path)
    except DatasetError:
        return list(fallback)
    names = _get(meta, key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != len(fallback):
        return list(fallback)
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


def load_cifar_python(folder: str | os.PathLike, split: str = "train", coarse: bool = False) -> ArrayDataset:
    """Load CIFAR-10 (``cifar-10-batches-py``) or CIFAR-100 (``cifar-100-python``) pickled batches.

    Same result as :func:`load_cifar_binary`; the pickles are read with the restricted
    plain-data reader, never unpickled.
    """
    folder = Path(folder)
    _check_split(split)
    if (folder / "train").exists() or (folder / "test").exists():
        key, k = ("coarse_labels", 20) if coarse else ("fine_labels", 100)
        x, y = read_cifar_python_batch(folder / split, key, k)
        if coarse:
            names = _python_names(folder / "meta", "coarse_label_names", CIFAR100_COARSE_CLASSES)
            return ArrayDataset(x, y, names, f"cifar100-coarse/{split}")
        names = _python_names(folder / "meta", "fine_label_names", CIFAR100_CLASSES)
        return ArrayDataset(x, y, names, f"cifar100/{split}")
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    parts = [read_cifar_python_batch(folder / f, "labels", 10) for f in files]
    names = _python_names(folder / "batches.meta", "label_names", CIFAR10_CLASSES)
    return ArrayDataset(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                        names, f"cifar10/{split}")
