"""IDX, CIFAR (binary and pickled), npz, CSV and image-folder readers: valid and corrupt files."""

from __future__ import annotations

import gzip
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from gradcraft.data import (
    DatasetError,
    DatasetNotFoundError,
    load_cifar_binary,
    load_cifar_python,
    load_csv,
    load_idx,
    load_npz,
    loads_pickle,
    parse_idx,
    read_cifar_binary,
    read_idx,
)
from tests.data.helpers import (
    cifar_python_batch,
    cifar_records,
    idx_bytes,
    small_images,
    write_cifar10_bin,
    write_idx,
)

FASHION = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trips_every_type(dtype):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    out = parse_idx(idx_bytes(arr))
    np.testing.assert_array_equal(out, arr)
    assert out.dtype == np.dtype(dtype).newbyteorder("=")
    assert out.flags.writeable


@pytest.mark.parametrize("compress", [True, False])
def test_load_idx_reads_gzipped_and_raw_files(tmp_path, compress):
    x, y = small_images(12)
    images = write_idx(tmp_path / "img", x, compress)
    labels = write_idx(tmp_path / "lab", y, compress)
    ds = load_idx(images, labels, classes=[str(k) for k in range(10)])
    assert ds.x.shape == (12, 1, 28, 28) and ds.x.dtype == np.uint8
    assert ds.y.dtype == np.int64
    np.testing.assert_array_equal(ds.x[:, 0], x)
    np.testing.assert_array_equal(ds.y, y)
    assert len(ds) == 12 and ds[3][1] == 3


def test_load_idx_transposes_emnist_images(tmp_path):
    x, y = small_images(4, 5, 7)
    ds = load_idx(write_idx(tmp_path / "i", x), write_idx(tmp_path / "l", y), transpose=True)
    assert ds.x.shape == (4, 1, 7, 5)
    np.testing.assert_array_equal(ds.x[:, 0], x.transpose(0, 2, 1))


@pytest.mark.parametrize("data, match", [
    (b"", "at least 4"),
    (b"\x01\x00\x08\x01" + b"\x00" * 8, "magic"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "type code"),
    (b"\x00\x00\x08\x00", "ndim=0"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", "header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "truncated"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "Expected 1 data bytes"),
    (b"\x00\x00\x08\x02\xff\xff\xff\xff\xff\xff\xff\xff\x00", "data bytes"),
])
def test_parse_idx_refuses_corrupt_headers(data, match):
    with pytest.raises(DatasetError, match=match):
        parse_idx(data, "f.idx")


def test_truncated_gzip_names_the_file(tmp_path):
    x, _ = small_images(5)
    blob = gzip.compress(idx_bytes(x))
    path = tmp_path / "cut-images-idx3-ubyte.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match=re.escape("cut-images-idx3-ubyte.gz")):
        read_idx(path)


def test_missing_file_raises_not_found(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        read_idx(tmp_path / "nope")


def test_load_idx_checks_counts_shapes_and_label_range(tmp_path):
    x, y = small_images(6)
    img = write_idx(tmp_path / "i", x)
    with pytest.raises(DatasetError, match="as many labels"):
        load_idx(img, write_idx(tmp_path / "l5", y[:5]))
    with pytest.raises(DatasetError, match=r"labels in \[0, 3\)"):
        load_idx(img, write_idx(tmp_path / "l", y), classes=["a", "b", "c"])
    with pytest.raises(DatasetError, match="image file of shape"):
        load_idx(write_idx(tmp_path / "flat", x.reshape(6, -1)), write_idx(tmp_path / "l2", y))
    with pytest.raises(DatasetError, match="label file"):
        load_idx(img, write_idx(tmp_path / "l3", y.astype(np.float32)))


@pytest.mark.skipif(not FASHION.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_loads_with_expected_shapes_and_balance():
    from gradcraft.data import load

    test = load("fashion-mnist", split="test", download=False)
    assert test.x.shape == (10000, 1, 28, 28) and test.x.dtype == np.uint8
    assert test.y.shape == (10000,) and test.y.dtype == np.int64
    assert test.classes[0] == "T-shirt/top" and len(test.classes) == 10
    np.testing.assert_array_equal(np.bincount(test.y), np.full(10, 1000))


# ---------------------------------------------------------------------------- CIFAR binary
def test_cifar10_binary_folder_loads_all_batches(tmp_path):
    (x_tr, y_tr), (x_te, _) = write_cifar10_bin(tmp_path / "bin")
    train = load_cifar_binary(tmp_path / "bin", "train")
    test = load_cifar_binary(tmp_path / "bin", "test")
    assert train.x.shape == (15, 3, 32, 32) and train.x.dtype == np.uint8
    np.testing.assert_array_equal(train.x, x_tr)
    np.testing.assert_array_equal(train.y, y_tr)
    np.testing.assert_array_equal(test.x, x_te)
    assert train.classes == [f"c{k}" for k in range(10)]


def test_cifar100_binary_fine_and_coarse_labels(tmp_path):
    x, labels, raw = cifar_records(7, 2)
    folder = tmp_path / "c100"
    folder.mkdir()
    (folder / "train.bin").write_bytes(raw)
    (folder / "test.bin").write_bytes(raw)
    fine = load_cifar_binary(folder, "train")
    coarse = load_cifar_binary(folder, "test", coarse=True)
    np.testing.assert_array_equal(fine.y, labels[:, 1])
    np.testing.assert_array_equal(coarse.y, labels[:, 0])
    assert len(fine.classes) == 100 and len(coarse.classes) == 20
    np.testing.assert_array_equal(fine.x, x)


def test_cifar_binary_refuses_truncated_and_bad_labels(tmp_path):
    _, _, raw = cifar_records(3)
    p = tmp_path / "data_batch_1.bin"
    p.write_bytes(raw[:-10])
    with pytest.raises(DatasetError, match=re.escape("data_batch_1.bin")):
        read_cifar_binary(p)
    p.write_bytes(b"")
    with pytest.raises(DatasetError, match="whole 3073-byte records"):
        read_cifar_binary(p)
    bad = bytearray(raw)
    bad[0] = 10
    p.write_bytes(bytes(bad))
    with pytest.raises(DatasetError, match=r"labels in \[0, 10\)"):
        read_cifar_binary(p)


# ---------------------------------------------------------------------------- CIFAR pickles
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("bytes_keys", [True, False])
def test_cifar_python_batches_read_without_unpickling(tmp_path, protocol, bytes_keys):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    xs = []
    for i in range(1, 6):
        x, lab, _ = cifar_records(2, seed=i)
        (folder / f"data_batch_{i}").write_bytes(cifar_python_batch(x, lab[:, 0].tolist(), protocol=protocol,
                                                                    as_bytes_keys=bytes_keys))
        xs.append(x)
    x_t, lab_t, _ = cifar_records(3, seed=7)
    (folder / "test_batch").write_bytes(cifar_python_batch(x_t, lab_t[:, 0].tolist(), protocol=protocol))
    meta = {b"label_names": [f"n{k}".encode() for k in range(10)], b"num_cases_per_batch": 2}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    train = load_cifar_python(folder, "train")
    np.testing.assert_array_equal(train.x, np.concatenate(xs))
    assert train.classes == [f"n{k}" for k in range(10)]
    test = load_cifar_python(folder, "test")
    np.testing.assert_array_equal(test.y, lab_t[:, 0])


def test_cifar100_python_format(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    x, labels, _ = cifar_records(4, 2)
    blob = pickle.dumps({b"data": x.reshape(4, -1), b"fine_labels": labels[:, 1].tolist(),
                         b"coarse_labels": labels[:, 0].tolist()}, protocol=2)
    (folder / "train").write_bytes(blob)
    (folder / "test").write_bytes(blob)
    ds = load_cifar_python(folder, "train", coarse=True)
    np.testing.assert_array_equal(ds.y, labels[:, 0])
    assert len(ds.classes) == 20


@pytest.mark.parametrize("value", [
    {"a": [1, 2.5, None, True, False, "s", b"b", (1, (2,))], "big": 2**70, "neg": -3},
    [np.arange(6, dtype=np.float32).reshape(2, 3), np.zeros((0, 4), np.int16), np.array([True, False])],
    {"f": np.asfortranarray(np.arange(12, dtype=">i4").reshape(3, 4))},
])
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_safe_pickle_decodes_plain_data_like_pickle(value, protocol):
    blob = pickle.dumps(value, protocol=protocol)
    out = loads_pickle(blob)
    expected = pickle.loads(blob)  # our own freshly made bytes: the reference decoding
    assert repr(type(out)) == repr(type(expected))

    def same(a, b):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype.newbyteorder("=") or a.dtype == b.dtype
        elif isinstance(a, dict):
            assert a.keys() == b.keys()
            for k in a:
                same(a[k], b[k])
        elif isinstance(a, (list, tuple)):
            assert len(a) == len(b)
            for u, v in zip(a, b):
                same(u, v)
        else:
            assert a == b

    same(out, expected)


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_safe_pickle_refuses_code_and_never_runs_it(tmp_path, protocol):
    marker = tmp_path / "pwned"
    blob = pickle.dumps({b"data": _Evil(str(marker))}, protocol=protocol)
    with pytest.raises(DatasetError, match="refused"):
        loads_pickle(blob, "evil.pkl")
    assert not marker.exists()


@pytest.mark.parametrize("obj", [
    {1, 2},                                      # sets are not plain data here
    np.array(["a", "b"]),                        # string arrays
    np.array([1, "x"], dtype=object),            # object arrays
    np.zeros(2, dtype=[("a", "<i4"), ("b", "<f4")]),  # structured dtypes
])
def test_safe_pickle_refuses_non_numeric_content(obj):
    with pytest.raises(DatasetError):
        loads_pickle(pickle.dumps(obj, protocol=2))


def test_safe_pickle_refuses_arrays_whose_data_disagree_with_shape():
    blob = pickle.dumps(np.arange(4, dtype=np.uint8), protocol=2)
    bad = blob.replace(b"\x00\x01\x02\x03", b"\x00\x01\x02")  # drop one data byte (length byte too)
    with pytest.raises(DatasetError):
        loads_pickle(bad)


def test_safe_pickle_shared_references_are_resolved_once():
    inner = [np.arange(3)]
    for _ in range(40):  # 2**40 leaves if expanded naively
        inner = [inner, inner]
    out = loads_pickle(pickle.dumps(inner, protocol=2))
    assert out[0] is out[1]  # sharing is kept, nothing is expanded
    deep: list = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(DatasetError, match="depth"):
        loads_pickle(pickle.dumps(deep, protocol=2))


# ---------------------------------------------------------------------------- npz and csv
def test_npz_reads_default_and_named_keys(tmp_path):
    x = np.arange(24, dtype=np.uint8).reshape(6, 1, 2, 2)
    y = np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "a.npz", x=x, y=y)
    ds = load_npz(tmp_path / "a.npz", classes=["a", "b", "c"])
    np.testing.assert_array_equal(ds.x, x)
    assert ds.y.dtype == np.int64
    np.savez(tmp_path / "b.npz", images=x, targets=y.astype(np.float32))
    ds = load_npz(tmp_path / "b.npz")
    np.testing.assert_array_equal(ds.y, y)
    np.savez(tmp_path / "c.npz", feats=x, lab=y)
    ds = load_npz(tmp_path / "c.npz", x_key="feats", y_key="lab")
    assert len(ds) == 6
    np.save(tmp_path / "d.npy", x)
    assert load_npz(tmp_path / "d.npy").y is None


def test_npz_refuses_objects_mismatches_and_garbage(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([1, "a"], dtype=object))
    with pytest.raises(DatasetError, match=re.escape("obj.npz")):
        load_npz(tmp_path / "obj.npz")
    np.savez(tmp_path / "mis.npz", x=np.zeros((3, 2)), y=np.zeros(4))
    with pytest.raises(DatasetError, match="Expected 3 labels"):
        load_npz(tmp_path / "mis.npz")
    np.savez(tmp_path / "rng.npz", x=np.zeros((2, 2)), y=np.array([0, 5]))
    with pytest.raises(DatasetError, match=r"\[0, 2\)"):
        load_npz(tmp_path / "rng.npz", classes=["a", "b"])
    np.savez(tmp_path / "nokey.npz", q=np.zeros(3))
    with pytest.raises(DatasetError, match="Expected arrays"):
        load_npz(tmp_path / "nokey.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DatasetError, match=re.escape("junk.npz")):
        load_npz(tmp_path / "junk.npz")


def test_csv_with_header_label_column_and_shape(tmp_path):
    rows = ["label,p1,p2,p3,p4", "1,0,255,3,4", "0,10,20,30,40"]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    ds = load_csv(tmp_path / "t.csv", label_column="label", shape=(1, 2, 2))
    assert ds.x.shape == (2, 1, 2, 2) and ds.x.dtype == np.uint8
    np.testing.assert_array_equal(ds.y, [1, 0])
    np.testing.assert_array_equal(ds.x[0].ravel(), [0, 255, 3, 4])
    (tmp_path / "f.csv").write_text("0.5,1.5,2\n0.25,3,1\n")
    ds = load_csv(tmp_path / "f.csv", label_column=-1)
    assert ds.x.dtype == np.float32 and ds.y.tolist() == [2, 1]


@pytest.mark.parametrize("text, match", [
    ("", "empty"),
    ("a,b\n", "data rows"),
    ("1,2,3\n4,5\n", "rectangular"),
    ("1,2,3\n4,x,6\n", "rectangular"),
    ("1.5,2\n", "integer labels"),
    ("1,nan\n", "finite"),
])
def test_csv_refuses_malformed_tables(tmp_path, text, match):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(DatasetError, match=match):
        load_csv(tmp_path / "bad.csv")


def test_csv_refuses_wrong_shape(tmp_path):
    (tmp_path / "s.csv").write_text("0,1,2,3\n")
    with pytest.raises(DatasetError, match="values per row"):
        load_csv(tmp_path / "s.csv", shape=(2, 2))


# ---------------------------------------------------------------------------- image folders
def test_image_folder_reads_classes_in_sorted_order(tmp_path):
    image_mod = pytest.importorskip("PIL.Image")
    from gradcraft.data import load_image_folder

    rng = np.random.default_rng(0)
    arrays = {}
    for cls in ("dog", "cat"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            a = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
            image_mod.fromarray(a).save(tmp_path / cls / f"{i}.png")
            arrays[(cls, i)] = a
    (tmp_path / "cat" / "notes.txt").write_text("skip me")
    ds = load_image_folder(tmp_path)
    assert ds.classes == ["cat", "dog"]
    assert ds.x.shape == (4, 3, 6, 5)
    np.testing.assert_array_equal(ds.y, [0, 0, 1, 1])
    np.testing.assert_array_equal(ds.x[2], arrays[("dog", 0)].transpose(2, 0, 1))
    grey = load_image_folder(tmp_path, size=(4, 4), mode="L")
    assert grey.x.shape == (4, 1, 4, 4)


def test_image_folder_names_a_corrupt_image(tmp_path):
    pytest.importorskip("PIL")
    from gradcraft.data import load_image_folder

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DatasetError, match=re.escape("broken.png")):
        load_image_folder(tmp_path)
    with pytest.raises(DatasetNotFoundError):
        load_image_folder(tmp_path / "missing")
