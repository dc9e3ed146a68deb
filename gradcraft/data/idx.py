"""Reader for the IDX format of MNIST, Fashion-MNIST, KMNIST and EMNIST (raw or gzipped).

An IDX file is a big-endian header followed by the array in C order::

    offset 0   0x00 0x00          two zero bytes
    offset 2   type code          0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                                  0x0D float32, 0x0E float64
    offset 3   ndim               number of dimensions d
    offset 4   d × uint32 (BE)    the sizes of the dimensions
    offset 4+4d                   prod(sizes) values of the type, big-endian

So ``train-images-idx3-ubyte`` starts ``00 00 08 03 | 00 00 EA 60 | 00 00 00 1C | 00 00 00 1C``
(60000 images of 28 × 28 bytes) and ``train-labels-idx1-ubyte`` ``00 00 08 01 | 00 00 EA 60``.

Every size is checked against the bytes present: a truncated file, trailing garbage, an
unknown type code or a header that promises more data than there is raises
:class:`~gradcraft.data.DatasetError` naming the file.

EMNIST stores each image transposed (column-major); :func:`load_idx` takes ``transpose=True``
to put it upright.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gradcraft.data._io import read_bytes
from gradcraft.data.dataset import ArrayDataset
from gradcraft.data.errors import DatasetError

__all__ = ["load_idx", "parse_idx", "read_idx"]

_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes, path: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Decode the (already decompressed) bytes of an IDX file into a native-endian array.

    Args:
        data: the whole file content.
        path: the file name, used in error messages.

    Returns:
        An array of shape ``(d_0, …, d_{ndim-1})`` and the file's type (native byte order).

    Raises:
        DatasetError: on a bad magic number, unknown type, or a size that does not match.
    """
    if len(data) < 4:
        raise DatasetError(
            f"Expected an IDX file of at least 4 header bytes in '{path}'. Received: {len(data)} bytes"
        )
    if data[0] != 0 or data[1] != 0:
        raise DatasetError(
            f"Expected the IDX magic number (two zero bytes, type, ndim) at the start of '{path}'. "
            f"Received: {data[:4].hex(' ')}"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_TYPES:
        raise DatasetError(
            f"Expected an IDX type code in {{0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E}} in '{path}'. "
            f"Received: 0x{code:02X}"
        )
    if ndim == 0:
        raise DatasetError(f"Expected an IDX array with at least one dimension in '{path}'. Received: ndim=0")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(
            f"Expected a {header}-byte IDX header for ndim={ndim} in '{path}'. "
            f"Received: a truncated file of {len(data)} bytes"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[code]
    expected = dtype.itemsize * int(np.prod(shape, dtype=object))
    if len(data) - header != expected:
        raise DatasetError(
            f"Expected {expected} data bytes for an IDX array of shape {shape} and type {dtype.name} "
            f"in '{path}'. Received: {len(data) - header} bytes (file truncated or corrupt)"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True) if dtype.byteorder == ">" else arr.copy()


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzipped) into a NumPy array. See :func:`parse_idx`."""
    return parse_idx(read_bytes(path), path)


def load_idx(images_path: str | os.PathLike, labels_path: str | os.PathLike,
             classes: Sequence[str] | None = None, transpose: bool = False,
             name: str | None = None) -> ArrayDataset:
    """Load an IDX image file and its label file as an :class:`ArrayDataset`.

    Args:
        images_path: IDX file of shape ``(N, H, W)`` (type uint8).
        labels_path: IDX file of shape ``(N,)`` (integer type).
        classes: class names; labels must lie in ``[0, len(classes))``.
        transpose: swap ``H`` and ``W`` (EMNIST stores images transposed).
        name: a description for ``repr``.

    Returns:
        ``ArrayDataset`` with ``x`` uint8 ``(N, 1, H, W)``, ``y`` int64 ``(N,)``.

    Raises:
        DatasetError: if either file is corrupt, the shapes or counts disagree, or a label
            is out of range.
    """
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DatasetError(
            f"Expected an IDX image file of shape (N, H, W) and type uint8 in '{images_path}'. "
            f"Received: shape={images.shape}, type={images.dtype}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetError(
            f"Expected an IDX label file of shape (N,) with an integer type in '{labels_path}'. "
            f"Received: shape={labels.shape}, type={labels.dtype}"
        )
    if labels.shape[0] != images.shape[0]:
        raise DatasetError(
            f"Expected as many labels as images. Received: {images.shape[0]} images in '{images_path}' "
            f"and {labels.shape[0]} labels in '{labels_path}'"
        )
    y = labels.astype(np.int64)
    check_labels(y, None if classes is None else len(classes), Path(labels_path))
    if transpose:
        images = images.transpose(0, 2, 1)
    x = np.ascontiguousarray(images[:, None, :, :])
    return ArrayDataset(x, y, classes, name)


def check_labels(y: np.ndarray, num_classes: int | None, path: str | os.PathLike) -> None:
    """Raise :class:`DatasetError` unless ``0 <= y < num_classes`` (``y >= 0`` if unknown)."""
    if y.size == 0:
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or (num_classes is not None and hi >= num_classes):
        bound = f"[0, {num_classes})" if num_classes is not None else "[0, ∞)"
        raise DatasetError(
            f"Expected labels in {bound} in '{path}'. Received: labels in [{lo}, {hi}]"
        )
