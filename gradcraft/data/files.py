"""Readers for generic files: NumPy ``.npz`` / ``.npy``, CSV tables, and folders of images.

* :func:`load_npz` reads arrays with ``allow_pickle=False`` (an object array is refused, never
  unpickled).
* :func:`load_csv` reads a numeric table whose label is one column (Kaggle's
  ``fashion-mnist_train.csv`` layout: ``label,pixel1,…,pixel784``) and reshapes the rest.
* :func:`load_image_folder` reads ``root/<class>/<image>`` files with Pillow (the optional
  ``images`` extra), sorted by class name, into one ``uint8`` ``(N, C, H, W)`` array.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradcraft.data._io import read_bytes
from gradcraft.data.dataset import ArrayDataset
from gradcraft.data.errors import DatasetError, DatasetNotFoundError
from gradcraft.data.idx import check_labels

__all__ = ["IMAGE_EXTENSIONS", "load_csv", "load_image_folder", "load_npz"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _as_labels(y: np.ndarray, path: Any, what: str) -> np.ndarray:
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)) or np.abs(y).max(initial=0) > 2**53:
            raise DatasetError(f"Expected integer {what} in '{path}'. Received: non-integer values")
    elif y.dtype.kind not in "iub":
        raise DatasetError(f"Expected integer {what} in '{path}'. Received: dtype {y.dtype}")
    return y.astype(np.int64)


def load_npz(path: str | os.PathLike, x_key: str | None = None, y_key: str | None = None,
             classes: Sequence[str] | None = None) -> ArrayDataset:
    """Load inputs and labels from a ``.npz`` archive (or inputs only from a ``.npy`` file).

    Args:
        path: the file.
        x_key: array name of the inputs; default the first of ``x``, ``images``, ``data``,
            ``arr_0`` that exists.
        y_key: array name of the labels; default the first of ``y``, ``labels``, ``targets``
            present (none: unlabelled).
        classes: class names; integer labels must then lie in ``[0, len(classes))``.

    Returns:
        ``ArrayDataset(x, y)``; integer (or integral float) labels become int64.

    Raises:
        DatasetError: unreadable or corrupt archive, object arrays, missing keys, length mismatch.
    """
    raw = read_bytes(path, decompress=False)
    try:
        if raw.startswith(b"\x93NUMPY"):
            _check_npy_size(io.BytesIO(raw), len(raw), "the array", path)
        loaded = np.load(io.BytesIO(raw), allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            x, y, xk, yk = loaded, None, "array", None
        else:
            with loaded as npz:
                x, y, xk, yk = _npz_arrays(npz, x_key, y_key, path)
    except DatasetError:
        raise
    except Exception as exc:
        # NumPy's header parser (an ast literal reader) and zipfile raise a dozen exception types on
        # damaged input (ValueError, BadZipFile, zlib.error, tokenize.TokenError, SyntaxError, …);
        # whatever they raise while parsing this file means the file is unusable.
        raise DatasetError(
            f"Expected a NumPy .npz/.npy file in '{path}'. Received: {type(exc).__name__}: {exc}"
        ) from exc
    return _npz_dataset(x, y, xk, yk, classes, path)


def _npz_arrays(npz: Any, x_key: str | None, y_key: str | None, path: Any) -> tuple[Any, Any, str, Any]:
    names = list(npz.files)
    xk = x_key or next((k for k in ("x", "images", "data", "arr_0") if k in names), None)
    yk = y_key or next((k for k in ("y", "labels", "targets") if k in names), None)
    if xk is None or xk not in names or (y_key is not None and y_key not in names):
        wanted = repr(x_key or "x") + (f" and {y_key!r}" if y_key else "")
        raise DatasetError(f"Expected arrays {wanted} in '{path}'. Received: arrays {names}")
    for key in (xk, yk):
        if key is not None:
            member_names = npz.zip.namelist()
            info = npz.zip.getinfo(f"{key}.npy" if f"{key}.npy" in member_names else key)
            with npz.zip.open(info) as member:
                _check_npy_size(member, info.file_size, repr(key), path)
    return npz[xk], (npz[yk] if yk is not None else None), xk, yk


def _check_npy_size(stream: Any, size: int, what: str, path: Any) -> None:
    """Refuse a ``.npy`` header whose shape promises more (or fewer) bytes than the file holds,
    before NumPy allocates anything for it."""
    fmt = np.lib.format
    version = fmt.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(stream)
    else:
        return  # other versions: NumPy's reader checks them itself
    if dtype.hasobject:
        raise DatasetError(f"Expected a numeric array for {what} in '{path}'. Received: an object array "
                           "(refused: loading it would unpickle)")
    count = 1
    for d in shape:
        count *= int(d)
    expected = stream.tell() + count * dtype.itemsize
    if expected != size:
        raise DatasetError(f"Expected {expected} bytes for {what} of shape {shape} and dtype {dtype} in "
                           f"'{path}'. Received: {size} bytes (truncated or corrupt)")


def _npz_dataset(x: np.ndarray, y: Any, xk: str, yk: Any, classes: Sequence[str] | None,
                 path: Any) -> ArrayDataset:
    if x.ndim == 0 or x.dtype.kind not in "biuf":
        raise DatasetError(f"Expected a numeric array with a batch axis as {xk!r} in '{path}'. "
                           f"Received: shape={x.shape}, dtype={x.dtype}")
    if y is not None:
        if y.ndim == 0 or y.shape[0] != x.shape[0]:
            raise DatasetError(
                f"Expected {x.shape[0]} labels in {yk!r} of '{path}'. Received: shape={y.shape}")
        if y.ndim == 1:
            y = _as_labels(y, path, f"labels {yk!r}")
            check_labels(y, None if classes is None else len(classes), path)
        elif y.dtype.kind not in "biuf":
            raise DatasetError(f"Expected numeric targets in {yk!r} of '{path}'. Received: dtype {y.dtype}")
    return ArrayDataset(x, y, classes, Path(path).name)


def load_csv(path: str | os.PathLike, label_column: int | str | None = 0,
             shape: Sequence[int] | None = None, header: bool | None = None, delimiter: str = ",",
             dtype: Any = None, classes: Sequence[str] | None = None) -> ArrayDataset:
    """Load a numeric CSV table as an :class:`ArrayDataset`.

    Args:
        path: the ``.csv`` file (gzipped works too).
        label_column: index or header name of the label column; ``None`` for no labels.
        shape: per-example shape of the remaining columns, e.g. ``(1, 28, 28)``; default ``(D,)``.
        header: whether the first line holds column names (default: detected — a first line
            that is not all numbers is a header).
        delimiter: the field separator.
        dtype: dtype of ``x`` (default ``uint8`` when every value is an integer in [0, 255],
            else float32).
        classes: class names; labels must then lie in ``[0, len(classes))``.

    Raises:
        DatasetError: ragged rows, non-numeric cells, a bad shape or labels out of range; the
            message names the file and, for parse errors, the line.
    """
    try:
        text = read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"Expected UTF-8 text in '{path}'. Received: undecodable bytes ({exc})") from exc
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DatasetError(f"Expected at least one row in '{path}'. Received: an empty file (or blank lines)")
    first = [c.strip() for c in lines[0].split(delimiter)]
    if header is None:
        header = not all(_is_number(c) for c in first)
    names = first if header else None
    if isinstance(label_column, str):
        if names is None or label_column not in names:
            raise DatasetError(f"Expected a column named {label_column!r} in the header of '{path}'. "
                               f"Received: {names[:8] if names else 'no header'}")
        label_column = names.index(label_column)
    body = lines[1:] if header else lines
    if not body:
        raise DatasetError(f"Expected data rows after the header in '{path}'. Received: none")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            table = np.loadtxt(body, delimiter=delimiter, dtype=np.float64, ndmin=2)
    except (ValueError, Warning) as exc:
        raise DatasetError(f"Expected a rectangular numeric table in '{path}'. Received: {exc}") from exc
    if not np.all(np.isfinite(table)):
        raise DatasetError(f"Expected finite numbers in '{path}'. Received: nan or inf values")
    y = None
    if label_column is not None:
        col = int(label_column)
        if not -table.shape[1] <= col < table.shape[1] or table.shape[1] < 2:
            raise DatasetError(f"Expected a label column index in [0, {table.shape[1]}) with data columns "
                               f"left in '{path}'. Received: label_column={label_column}")
        y = _as_labels(table[:, col], path, "labels")
        check_labels(y, None if classes is None else len(classes), path)
        table = np.delete(table, col, axis=1)
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if int(np.prod(shape)) != table.shape[1]:
            raise DatasetError(f"Expected {int(np.prod(shape))} values per row for shape {shape} in "
                               f"'{path}'. Received: {table.shape[1]} columns")
        table = table.reshape(-1, *shape)
    if dtype is None:
        lo, hi = table.min(initial=0.0), table.max(initial=0.0)
        if np.all(table == np.round(table)) and lo >= 0 and hi <= 255:
            dtype = np.uint8
        else:
            dtype = np.float32 if max(-lo, hi) <= np.finfo(np.float32).max else np.float64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            x = table.astype(dtype)
        except (ValueError, TypeError, Warning) as exc:
            raise DatasetError(f"Expected values representable as {np.dtype(dtype)} in '{path}'. "
                               f"Received: {exc}") from exc
    return ArrayDataset(x, y, classes, Path(path).name)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def load_image_folder(root: str | os.PathLike, size: tuple[int, int] | None = None, mode: str | None = None,
                      extensions: Sequence[str] = IMAGE_EXTENSIONS) -> ArrayDataset:
    """Load ``root/<class name>/<image file>`` into memory (needs Pillow: ``gradcraft[images]``).

    Classes are the sub-folder names in sorted order (label ``k`` = ``classes[k]``); files are
    read in sorted order.

    Args:
        root: the folder of class folders.
        size: ``(height, width)`` to resize every image to (bilinear); required when images
            differ in size.
        mode: Pillow mode ``"L"`` (grey, C = 1) or ``"RGB"`` (C = 3); default ``"RGB"`` if any
            image has colour, else ``"L"``.
        extensions: file suffixes to read (case-insensitive); other files are skipped.

    Returns:
        ``ArrayDataset``: ``x`` uint8 ``(N, C, H, W)``, ``y`` int64, ``classes``.

    Raises:
        DatasetError: no images, an unreadable image (the path is named), or mixed sizes
            without ``size``.
        ImportError: Pillow is not installed.
    """
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError('Reading image folders needs Pillow: pip install "gradcraft[images]"') from exc
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"Expected a folder of class folders. Received: '{root}' is not a folder")
    if mode not in (None, "L", "RGB"):
        raise ValueError(f"Expected mode 'L', 'RGB' or None. Received: mode={mode!r}")
    exts = tuple(e.lower() for e in extensions)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[tuple[Path, int]] = []
    for k, name in enumerate(classes):
        files += [(f, k) for f in sorted((root / name).iterdir()) if f.is_file() and f.suffix.lower() in exts]
    if not files:
        raise DatasetError(f"Expected image files ({', '.join(exts)}) in class folders of '{root}'. "
                           "Received: none")
    images = []
    for f, _ in files:
        try:
            with Image.open(f) as im:
                im.load()
                images.append(im.copy())
        except Exception as exc:
            # Pillow's decoders raise many types on damaged files (OSError, SyntaxError, struct.error,
            # DecompressionBombError, …); all mean the same thing: this file is unusable
            raise DatasetError(
                f"Expected a readable image in '{f}'. Received: {type(exc).__name__}: {exc}"
            ) from exc
    if mode is None:
        mode = "RGB" if any(im.mode not in ("L", "1", "I", "I;16", "F", "LA") for im in images) else "L"
    arrays = []
    for (f, _), image in zip(files, images):
        converted = image.convert(mode)
        if size is not None:
            converted = converted.resize((int(size[1]), int(size[0])), Image.Resampling.BILINEAR)
        a = np.asarray(converted, dtype=np.uint8)
        if arrays and a.shape != arrays[0].shape:
            raise DatasetError(f"Expected every image to be {arrays[0].shape[:2]} (or pass size=). "
                               f"Received: {a.shape[:2]} in '{f}'")
        arrays.append(a)
    x = np.stack(arrays)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    y = np.array([k for _, k in files], dtype=np.int64)
    return ArrayDataset(np.ascontiguousarray(x), y, classes, root.name)
