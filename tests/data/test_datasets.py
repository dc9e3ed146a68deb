"""load(): search order, downloads from a local HTTP server, checksum refusal, offline errors."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import re
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from gradcraft.data import ChecksumError, DatasetError, DatasetNotFoundError, datasets, download, load
from tests.data.helpers import cifar_records, write_mnist_like


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No real cache, no GRADCRAFT_DATA, an empty system folder: only what a test puts there."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("GRADCRAFT_DATA", raising=False)
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", [tmp_path / "system"])
    return tmp_path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):  # keep test output clean
        pass


@pytest.fixture
def http_root(tmp_path):
    """Serve ``tmp_path / 'www'`` on 127.0.0.1 from a thread; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _point_to(monkeypatch, name: str, base: str, folder: Path, corrupt: str | None = None):
    spec = datasets.DATASETS[name]
    remotes = tuple(
        datasets.Remote(base + r.filename, r.filename,
                        ("md5", "0" * 32 if r.filename == corrupt else _md5(folder / r.filename)))
        for r in spec.remotes)
    monkeypatch.setitem(datasets.DATASETS, name, dataclasses.replace(spec, remotes=remotes))


def test_search_order_prefers_gradcraft_data_then_cache_then_system(isolated, monkeypatch):
    system = write_mnist_like(isolated / "system" / "mnist", n_train=4)
    assert load("mnist", "train").x.shape[0] == 4
    np.testing.assert_array_equal(load("mnist", "train").x[:, 0], system["train"][0])
    write_mnist_like(isolated / "home" / ".cache" / "gradcraft" / "mnist", n_train=5)
    assert load("mnist", "train").x.shape[0] == 5
    write_mnist_like(isolated / "mine" / "mnist", n_train=6)
    monkeypatch.setenv("GRADCRAFT_DATA", str(isolated / "mine"))
    assert len(load("MNIST", "train")) == 6
    assert load("mnist", "train", root=isolated / "system").x.shape[0] == 4


def test_uncompressed_idx_files_are_found_too(isolated):
    write_mnist_like(isolated / "system" / "kmnist", compress=False)
    ds = load("kmnist", "test")
    assert ds.x.shape == (10, 1, 28, 28) and ds.classes[0] == "o"


def test_missing_offline_dataset_says_how_to_get_it(isolated, http_root, monkeypatch):
    _, base = http_root
    spec = datasets.DATASETS["fashion-mnist"]
    # a port nobody listens on: the connection is refused, like being offline
    dead = base.rsplit(":", 1)[0] + ":9/"
    remotes = tuple(dataclasses.replace(r, url=dead + r.filename) for r in spec.remotes)
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist", dataclasses.replace(spec, remotes=remotes))
    with pytest.raises(DatasetNotFoundError) as info:
        load("fashion-mnist", "train", progress=False)
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "GRADCRAFT_DATA" in message and "train-images-idx3-ubyte.gz" in message
    assert str(isolated / "system" / "fashion-mnist") in message
    with pytest.raises(DatasetNotFoundError, match="on disk"):
        load("fashion-mnist", "train", download=False)


def test_download_from_local_server_verifies_and_caches(isolated, http_root, monkeypatch):
    www, base = http_root
    arrays = write_mnist_like(www)
    _point_to(monkeypatch, "mnist", base, www)
    ds = load("mnist", "train", progress=False)
    np.testing.assert_array_equal(ds.x[:, 0], arrays["train"][0])
    cached = isolated / "home" / ".cache" / "gradcraft" / "mnist"
    assert sorted(p.name for p in cached.iterdir()) == sorted(p.name for p in www.iterdir())
    for p in www.iterdir():  # the server is no longer needed: found in the cache
        p.unlink()
    assert len(load("mnist", "test", progress=False)) == 10


def test_checksum_mismatch_is_refused_and_nothing_is_kept(isolated, http_root, monkeypatch):
    www, base = http_root
    write_mnist_like(www)
    _point_to(monkeypatch, "mnist", base, www, corrupt="train-labels-idx1-ubyte.gz")
    with pytest.raises(ChecksumError, match="md5"):
        load("mnist", "train", progress=False)
    cached = isolated / "home" / ".cache" / "gradcraft" / "mnist"
    assert not (cached / "train-labels-idx1-ubyte.gz").exists()
    assert not list(cached.glob("*.part"))


def test_download_function_with_sha256_and_progress_bar(tmp_path, http_root):
    www, base = http_root
    (www / "blob.bin").write_bytes(b"x" * 5000)
    digest = hashlib.sha256(b"x" * 5000).hexdigest()
    out = download(base + "blob.bin", tmp_path / "d" / "blob.bin", ("sha256", digest), progress=True)
    assert out.read_bytes() == b"x" * 5000
    with pytest.raises(ChecksumError):
        download(base + "blob.bin", tmp_path / "e" / "blob.bin", ("sha256", "1" * 64), progress=False)
    with pytest.raises(DatasetError, match="404"):
        download(base + "missing.bin", tmp_path / "f" / "missing.bin", None, progress=False)


def test_cifar10_archive_is_downloaded_and_only_its_members_extracted(isolated, http_root, monkeypatch):
    www, base = http_root
    buf = io.BytesIO()
    expected = {}
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
        for i, name in enumerate(names):
            x, lab, raw = cifar_records(2, seed=i)
            expected[name] = (x, lab[:, 0])
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
        meta = b"\n".join(f"k{i}".encode() for i in range(10))
        info = tarfile.TarInfo("cifar-10-batches-bin/batches.meta.txt")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
        evil = tarfile.TarInfo("../../escape.txt")
        evil.size = 3
        tar.addfile(evil, io.BytesIO(b"bad"))
    (www / "cifar-10-binary.tar.gz").write_bytes(buf.getvalue())
    _point_to(monkeypatch, "cifar10", base, www)
    test = load("cifar10", "test", progress=False)
    np.testing.assert_array_equal(test.x, expected["test_batch.bin"][0])
    assert test.classes == [f"k{i}" for i in range(10)]
    train = load("cifar10", "train", progress=False)
    assert train.x.shape == (10, 3, 32, 32)
    assert not list(isolated.rglob("escape.txt"))
    assert not (isolated / "home" / ".cache" / "gradcraft" / "cifar10" / "cifar-10-binary.tar.gz").exists()


def test_corrupt_file_on_disk_is_reported_not_downloaded(isolated):
    folder = isolated / "system" / "mnist"
    write_mnist_like(folder)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b broken")
    with pytest.raises(DatasetError, match=re.escape("train-images-idx3-ubyte.gz")):
        load("mnist", "train", download=False)


def test_unknown_name_and_split_are_rejected():
    with pytest.raises(ValueError, match="dataset name"):
        load("imagenet")
    with pytest.raises(ValueError, match="split"):
        load("mnist", split="val")
    assert "cifar100" in datasets.available()


def test_emnist_zip_download_extracts_transposed_images_and_shifts_letter_labels(isolated, http_root, monkeypatch):
    import gzip
    import zipfile

    from tests.data.helpers import idx_bytes

    www, base = http_root
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    y = np.array([1, 2, 26, 3, 1], dtype=np.uint8)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for part in ("train", "test"):
            zf.writestr(f"gzip/emnist-letters-{part}-images-idx3-ubyte.gz", gzip.compress(idx_bytes(x)))
            zf.writestr(f"gzip/emnist-letters-{part}-labels-idx1-ubyte.gz", gzip.compress(idx_bytes(y)))
        zf.writestr("../outside.txt", b"ignored")
    (www / "gzip.zip").write_bytes(buf.getvalue())
    _point_to(monkeypatch, "emnist-letters", base, www)
    ds = load("emnist_letters", "test", progress=False)
    np.testing.assert_array_equal(ds.x[:, 0], x.transpose(0, 2, 1))
    np.testing.assert_array_equal(ds.y, y.astype(np.int64) - 1)
    assert ds.classes[0] == "a" and len(ds.classes) == 26
    folder = isolated / "home" / ".cache" / "gradcraft" / "emnist"
    assert not (folder / "gzip.zip").exists() and not list(isolated.rglob("outside.txt"))
    assert load("emnist-letters", "train", download=False).x.shape == (5, 1, 28, 28)
