"""Property tests: readers fed random or damaged bytes load valid data or raise DatasetError.

Anything else escaping (IndexError, struct.error, zlib.error, MemoryError, …) is a bug.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradcraft.data import (
    DatasetError,
    load_csv,
    load_npz,
    loads_pickle,
    parse_idx,
    read_cifar_binary,
    read_idx,
)
from tests.data.helpers import cifar_python_batch, cifar_records, idx_bytes

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _mutate(data: bytes, draw) -> bytes:
    """Truncate, flip a few bytes, or append garbage."""
    kind = draw(st.sampled_from(["truncate", "flip", "append"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    if kind == "append":
        return data + draw(st.binary(min_size=1, max_size=16))
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(buf) - 1))
        buf[i] = draw(st.integers(0, 255))
    return bytes(buf)


def _valid_idx() -> bytes:
    return idx_bytes(np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4))


def _valid_pickles() -> list[bytes]:
    x, lab, _ = cifar_records(2)
    return [cifar_python_batch(x[:, :, :2, :2].copy().reshape(2, 3, 2, 2), lab[:, 0].tolist(), protocol=p)
            for p in (2, 4, 5)] + [pickle.dumps({"a": [1, 2.0, "s", b"b", None]}, protocol=2)]


@FUZZ
@given(st.binary(max_size=64))
def test_idx_random_bytes(data):
    try:
        arr = parse_idx(data)
    except DatasetError:
        return
    assert isinstance(arr, np.ndarray)


@FUZZ
@given(st.data())
def test_idx_damaged_files(data):
    blob = _mutate(_valid_idx(), data.draw)
    try:
        arr = parse_idx(blob)
    except DatasetError:
        return
    assert arr.size * arr.itemsize == len(blob) - 4 - 4 * arr.ndim


@FUZZ
@given(st.data())
def test_gzipped_idx_damaged_files(scratch, data):
    blob = _mutate(gzip.compress(_valid_idx()), data.draw)
    path = scratch / "fuzz-idx.gz"
    path.write_bytes(blob)
    with contextlib.suppress(DatasetError):
        read_idx(path)


@FUZZ
@given(st.binary(max_size=7000))
def test_cifar_binary_random_bytes(scratch, data):
    path = scratch / "fuzz.bin"
    path.write_bytes(data)
    try:
        x, labels = read_cifar_binary(path)
    except DatasetError:
        return
    assert x.shape[1:] == (3, 32, 32) and labels.max() < 10


@FUZZ
@given(st.binary(max_size=200))
def test_safe_pickle_random_bytes(data):
    with contextlib.suppress(DatasetError):
        loads_pickle(data)


@FUZZ
@given(st.data())
def test_safe_pickle_damaged_pickles(data):
    blob = _mutate(data.draw(st.sampled_from(_valid_pickles())), data.draw)
    with contextlib.suppress(DatasetError):
        loads_pickle(blob)


def _valid_npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=np.arange(12, dtype=np.uint8).reshape(3, 2, 2), y=np.array([0, 1, 2]))
    return buf.getvalue()


def _valid_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(6, dtype=np.float32).reshape(3, 2))
    return buf.getvalue()


@FUZZ
@given(st.data())
def test_npz_damaged_and_random_files(scratch, data):
    source = data.draw(st.sampled_from(["npz", "npy", "random"]))
    blob = (data.draw(st.binary(max_size=300)) if source == "random"
            else _mutate(_valid_npz() if source == "npz" else _valid_npy(), data.draw))
    path = scratch / "fuzz.npz"
    path.write_bytes(blob)
    try:
        ds = load_npz(path)
    except DatasetError:
        return
    assert len(ds) == ds.x.shape[0]


@FUZZ
@given(st.text(alphabet="0123456789,.-\n abxe", max_size=120))
def test_csv_random_text(scratch, text):
    path = scratch / "fuzz.csv"
    path.write_text(text)
    try:
        ds = load_csv(path)
    except DatasetError:
        return
    assert ds.y is not None and len(ds.y) == len(ds.x)


@FUZZ
@given(st.binary(max_size=120))
def test_csv_random_bytes(scratch, data):
    path = scratch / "fuzz-bytes.csv"
    path.write_bytes(data)
    with contextlib.suppress(DatasetError):
        load_csv(path, label_column=None)


def _valid_png() -> bytes:
    from gradcraft.data.preview import write_png

    with tempfile.TemporaryDirectory() as d:
        return write_png(Path(d) / "v.png", np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).read_bytes()


@FUZZ
@given(st.data())
def test_image_folder_damaged_images(scratch, data):
    pytest.importorskip("PIL")
    from gradcraft.data import load_image_folder

    folder = scratch / "images" / "cls"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.png").write_bytes(_mutate(_valid_png(), data.draw))
    try:
        ds = load_image_folder(scratch / "images")
    except DatasetError:
        return
    assert ds.x.dtype == np.uint8 and ds.x.ndim == 4

