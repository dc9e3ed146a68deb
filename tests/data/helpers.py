"""Builders of small, valid data files in the formats the readers accept."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
             np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(arr: np.ndarray) -> bytes:
    """The IDX encoding of ``arr`` (uint8, int8, int16, int32, float32 or float64)."""
    arr = np.asarray(arr)
    be = arr.dtype.newbyteorder(">") if arr.dtype.itemsize > 1 else arr.dtype
    header = bytes([0, 0, IDX_CODES[np.dtype(be)], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(be).tobytes()


def write_idx(path: Path, arr: np.ndarray, compress: bool = True) -> Path:
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def small_images(n: int = 20, h: int = 28, w: int = 28, classes: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
    y = (np.arange(n) % classes).astype(np.uint8)
    return x, y


def write_mnist_like(folder: Path, n_train: int = 20, n_test: int = 10, compress: bool = True):
    """Fashion-MNIST file names with small random content; returns the arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n, seed in (("train", "train", n_train, 0), ("test", "t10k", n_test, 1)):
        x, y = small_images(n, seed=seed)
        suffix = ".gz" if compress else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", x, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", y, compress)
        out[split] = (x, y)
    return out


def cifar_records(n: int, label_bytes: int = 1, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    if label_bytes == 1:
        labels = (np.arange(n) % 10).reshape(n, 1)
    else:
        labels = np.stack([np.arange(n) % 20, (np.arange(n) * 7) % 100], axis=1)
    raw = np.concatenate([labels.astype(np.uint8), x.reshape(n, -1)], axis=1).tobytes()
    return x, labels.astype(np.int64), raw


def write_cifar10_bin(folder: Path, n_per_batch: int = 3):
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i in range(1, 6):
        x, lab, raw = cifar_records(n_per_batch, 1, seed=i)
        (folder / f"data_batch_{i}.bin").write_bytes(raw)
        xs.append(x)
        ys.append(lab[:, 0])
    x_t, lab_t, raw_t = cifar_records(n_per_batch, 1, seed=99)
    (folder / "test_batch.bin").write_bytes(raw_t)
    (folder / "batches.meta.txt").write_text("\n".join(f"c{k}" for k in range(10)) + "\n\n")
    return (np.concatenate(xs), np.concatenate(ys)), (x_t, lab_t[:, 0])


def cifar_python_batch(x: np.ndarray, labels: list[int], key: str = "labels", protocol: int = 2,
                       as_bytes_keys: bool = True) -> bytes:
    """A pickled CIFAR batch dict, as the official files hold (created with pickle.dumps)."""
    def k(s: str):
        return s.encode() if as_bytes_keys else s

    batch = {k("batch_label"): b"training batch 1 of 5", k(key): list(labels),
             k("data"): x.reshape(x.shape[0], -1), k("filenames"): [b"a.png"] * x.shape[0]}
    return pickle.dumps(batch, protocol=protocol)
