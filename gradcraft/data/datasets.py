"""``load(name, split)``: find a standard dataset on disk, or download and verify it.

Where the files are looked for, in order (the first folder that has the split's files wins):

1. ``$GRADCRAFT_DATA/<name>/`` (``GRADCRAFT_DATA`` may list several folders, separated by ``:``);
2. ``~/.cache/gradcraft/<name>/`` (``$XDG_CACHE_HOME/gradcraft`` when that is set);
3. the system dataset folders ``/usr/share/datasets/<name>/`` and
   ``/usr/local/share/datasets/<name>/`` (Debian's ``dataset-fashion-mnist`` package installs
   ``/usr/share/datasets/fashion-mnist/``).

If none has them and ``download=True``, the files are fetched from the canonical addresses
into the cache, each verified against the checksum its publisher lists (MD5 for all of these
datasets), with a progress bar when ``rich`` is installed. Offline, the error lists the
folders searched and exactly how to get the files (apt package, URLs, environment variable).

Files found on disk are not checksummed (Debian recompresses the archives, so their digests
differ from the published ones); every reader validates the structure of what it reads instead.

================  =========================================  ===============================
name              split files                                 x, y
================  =========================================  ===============================
fashion-mnist     ``{train,t10k}-{images-idx3,labels-idx1}``  uint8 (N,1,28,28), int64 (N,)
mnist             same IDX names                              uint8 (N,1,28,28), int64 (N,)
kmnist            same IDX names                              uint8 (N,1,28,28), int64 (N,)
cifar10           ``cifar-10-batches-bin/`` (or ``-py/``)     uint8 (N,3,32,32), int64 (N,)
cifar100          ``cifar-100-binary/`` (or ``-python/``)     uint8 (N,3,32,32), int64 (N,)
emnist-<split>    ``emnist-<split>-{train,test}-…-ubyte.gz``  uint8 (N,1,28,28), int64 (N,)
================  =========================================  ===============================

EMNIST's splits are ``balanced`` (47 classes), ``byclass`` (62), ``bymerge`` (47), ``digits``,
``letters`` (26, labels shifted from 1–26 to 0–25) and ``mnist``; all live in one ``emnist/``
folder (the files of NIST's ``gzip.zip``, whose 562 MB download is extracted there). Its images
are stored transposed in the files and are returned upright.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gradcraft.data.cifar import load_cifar_binary, load_cifar_python
from gradcraft.data.dataset import ArrayDataset
from gradcraft.data.download import download as download_file
from gradcraft.data.errors import DatasetError, DatasetNotFoundError
from gradcraft.data.idx import load_idx

__all__ = ["DATASETS", "DatasetSpec", "Remote", "available", "cache_dir", "load", "search_roots"]

SYSTEM_DIRS: list[Path] = [Path("/usr/share/datasets"), Path("/usr/local/share/datasets")]


@dataclass(frozen=True)
class Remote:
    """One file to download: ``url``, saved as ``filename``, checked against ``checksum``."""

    url: str
    filename: str
    checksum: tuple[str, str]


@dataclass
class DatasetSpec:
    """How to find, fetch and read one dataset.

    ``find(folder, split)`` returns a callable that reads the split from ``folder`` when the
    needed files are there, else ``None``. ``prepare(folder)`` runs after a download (e.g.
    extracts an archive).
    """

    name: str
    find: Callable[[Path, str], Callable[[], ArrayDataset] | None]
    remotes: tuple[Remote, ...]
    homepage: str
    apt: str | None = None
    prepare: Callable[[Path], None] | None = None
    classes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- IDX datasets
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _existing(folder: Path, name: str) -> Path | None:
    """``folder/name``, or the same without ``.gz`` (already decompressed), if either exists."""
    for candidate in (name, name.removesuffix(".gz")):
        p = folder / candidate
        if p.is_file():
            return p
    return None


def _idx_finder(dataset: str, classes: list[str]) -> Callable[[Path, str], Callable[[], ArrayDataset] | None]:
    def find(folder: Path, split: str) -> Callable[[], ArrayDataset] | None:
        images, labels = (_existing(folder, f) for f in _IDX_FILES[split])
        if images is None or labels is None:
            return None
        return lambda: load_idx(images, labels, classes, name=f"{dataset}/{split}")

    return find


def _idx_remotes(base: str, md5: dict[str, str]) -> tuple[Remote, ...]:
    return tuple(Remote(base + f, f, ("md5", h)) for f, h in md5.items())


FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MNIST_CLASSES = [str(d) for d in range(10)]
KMNIST_CLASSES = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]


# ---------------------------------------------------------------------------- CIFAR
def _cifar_finder(bin_dir: str, py_dir: str, bin_files: dict[str, list[str]],
                  py_files: dict[str, list[str]], coarse: bool = False
                  ) -> Callable[[Path, str], Callable[[], ArrayDataset] | None]:
    def find(folder: Path, split: str) -> Callable[[], ArrayDataset] | None:
        b = folder / bin_dir
        if all((b / f).is_file() for f in bin_files[split]):
            return lambda: load_cifar_binary(b, split, coarse)
        p = folder / py_dir
        if all((p / f).is_file() for f in py_files[split]):
            return lambda: load_cifar_python(p, split, coarse)
        return None

    return find


def _extract_tar(archive_name: str, members: tuple[str, ...]) -> Callable[[Path], None]:
    """Extract only the listed regular files of a downloaded tarball, then delete the tarball.

    Members are written by us under their fixed names, never by ``tarfile.extract``, so an
    archive cannot place files outside ``folder`` (no path traversal, no links).
    """

    def prepare(folder: Path) -> None:
        archive = folder / archive_name
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in members:
                    info = tar.getmember(member)
                    src = tar.extractfile(info) if info.isfile() else None
                    if src is None:
                        raise DatasetError(f"Expected '{member}' to be a regular file in '{archive}'. "
                                           "Received: a link or folder")
                    dest = folder / member
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dest.with_name(dest.name + ".part")
                    with src, open(tmp, "wb") as out:
                        while chunk := src.read(1 << 20):
                            out.write(chunk)
                    os.replace(tmp, dest)
        except (tarfile.TarError, KeyError, OSError, EOFError) as exc:
            raise DatasetError(f"Expected a tar archive containing {members[0]}, … in '{archive}'. "
                               f"Received: {exc}") from exc
        archive.unlink(missing_ok=True)

    return prepare


# ---------------------------------------------------------------------------- EMNIST
EMNIST_SPLITS = ("balanced", "byclass", "bymerge", "digits", "letters", "mnist")
_DIGITS = [str(d) for d in range(10)]
_UPPER = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
_LOWER = [chr(c) for c in range(ord("a"), ord("z") + 1)]
_EMNIST_CLASSES = {
    "balanced": _DIGITS + _UPPER + list("abdefghnqrt"),
    "bymerge": _DIGITS + _UPPER + list("abdefghnqrt"),
    "byclass": _DIGITS + _UPPER + _LOWER,
    "digits": _DIGITS,
    "mnist": _DIGITS,
    "letters": _LOWER,  # upper and lower case merged; the files' labels 1..26 become 0..25
}


def _emnist_finder(split: str) -> Callable[[Path, str], Callable[[], ArrayDataset] | None]:
    """EMNIST stores images transposed, and the ``letters`` labels start at 1 (shifted to 0 here)."""
    classes = _EMNIST_CLASSES[split]

    def find(folder: Path, part: str) -> Callable[[], ArrayDataset] | None:
        kind = "train" if part == "train" else "test"
        for where in (folder, folder / "gzip"):
            images = _existing(where, f"emnist-{split}-{kind}-images-idx3-ubyte.gz")
            labels = _existing(where, f"emnist-{split}-{kind}-labels-idx1-ubyte.gz")
            if images is not None and labels is not None:
                return lambda: _load_emnist(images, labels, split, part)
        return None

    def _load_emnist(images: Path, labels: Path, split: str, part: str) -> ArrayDataset:
        if split != "letters":
            return load_idx(images, labels, classes, transpose=True, name=f"emnist-{split}/{part}")
        ds = load_idx(images, labels, ["n/a", *classes], transpose=True, name=f"emnist-letters/{part}")
        if ds.y.size and ds.y.min() < 1:
            raise DatasetError(f"Expected EMNIST letters labels in [1, 26] in '{labels}'. "
                               f"Received: a label {int(ds.y.min())}")
        return ArrayDataset(ds.x, ds.y - 1, classes, ds.name)

    return find


def _extract_zip(archive_name: str, prefix: str) -> Callable[[Path], None]:
    """Extract the regular files under ``prefix`` of a downloaded zip into ``folder`` (flattened
    to their base names, so no member can land outside it), then delete the zip."""

    def prepare(folder: Path) -> None:
        import zipfile

        archive = folder / archive_name
        try:
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    base = info.filename.rsplit("/", 1)[-1]
                    wanted = info.filename.startswith(prefix) and base and not base.startswith(".")
                    if info.is_dir() or not wanted:
                        continue
                    tmp = folder / (base + ".part")
                    with zf.open(info) as src, open(tmp, "wb") as out:
                        while chunk := src.read(1 << 20):
                            out.write(chunk)
                    os.replace(tmp, folder / base)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DatasetError(f"Expected a zip archive with {prefix}* files in '{archive}'. "
                               f"Received: {exc}") from exc
        archive.unlink(missing_ok=True)

    return prepare


_C10_BIN = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
_C10_PY = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_C100_BIN = {"train": ["train.bin"], "test": ["test.bin"]}
_C100_PY = {"train": ["train"], "test": ["test"]}


def _registry() -> dict[str, DatasetSpec]:
    from gradcraft.data.cifar import CIFAR10_CLASSES, CIFAR100_CLASSES, CIFAR100_COARSE_CLASSES

    c10_members = tuple(f"cifar-10-batches-bin/{f}" for f in
                        [*_C10_BIN["train"], *_C10_BIN["test"], "batches.meta.txt"])
    c100_members = tuple(f"cifar-100-binary/{f}" for f in
                         ["train.bin", "test.bin", "fine_label_names.txt", "coarse_label_names.txt"])
    c100_prepare = _extract_tar("cifar-100-binary.tar.gz", c100_members)
    c100_remote = (Remote("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                          "cifar-100-binary.tar.gz", ("md5", "03b5dce01913d631647c71ecec9e9cb8")),)
    return {
        "fashion-mnist": DatasetSpec(
            "fashion-mnist", _idx_finder("fashion-mnist", FASHION_MNIST_CLASSES),
            _idx_remotes("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", {
                "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
            }),
            "https://github.com/zalandoresearch/fashion-mnist", apt="dataset-fashion-mnist",
            classes=FASHION_MNIST_CLASSES),
        "mnist": DatasetSpec(
            "mnist", _idx_finder("mnist", MNIST_CLASSES),
            _idx_remotes("https://ossci-datasets.s3.amazonaws.com/mnist/", {
                "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
            }),
            "http://yann.lecun.com/exdb/mnist/", classes=MNIST_CLASSES),
        "kmnist": DatasetSpec(
            "kmnist", _idx_finder("kmnist", KMNIST_CLASSES),
            _idx_remotes("http://codh.rois.ac.jp/kmnist/dataset/kmnist/", {
                "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
                "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
                "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
                "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
            }),
            "https://github.com/rois-codh/kmnist", classes=KMNIST_CLASSES),
        "cifar10": DatasetSpec(
            "cifar10", _cifar_finder("cifar-10-batches-bin", "cifar-10-batches-py", _C10_BIN, _C10_PY),
            (Remote("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", "cifar-10-binary.tar.gz",
                    ("md5", "c32a1d4ab5d03f1284b67883e8d87530")),),
            "https://www.cs.toronto.edu/~kriz/cifar.html",
            prepare=_extract_tar("cifar-10-binary.tar.gz", c10_members), classes=CIFAR10_CLASSES),
        "cifar100": DatasetSpec(
            "cifar100", _cifar_finder("cifar-100-binary", "cifar-100-python", _C100_BIN, _C100_PY),
            c100_remote, "https://www.cs.toronto.edu/~kriz/cifar.html", prepare=c100_prepare,
            classes=CIFAR100_CLASSES),
        "cifar100-coarse": DatasetSpec(
            "cifar100", _cifar_finder("cifar-100-binary", "cifar-100-python", _C100_BIN, _C100_PY, True),
            c100_remote, "https://www.cs.toronto.edu/~kriz/cifar.html", prepare=c100_prepare,
            classes=CIFAR100_COARSE_CLASSES),
        **{f"emnist-{split}": DatasetSpec(
            "emnist", _emnist_finder(split),
            (Remote("https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip", "gzip.zip",
                    ("md5", "58c8d27c78d21e728a6bc7b3cc06412e")),),
            "https://www.nist.gov/itl/products-and-services/emnist-dataset",
            prepare=_extract_zip("gzip.zip", "gzip/emnist-"), classes=_EMNIST_CLASSES[split])
           for split in EMNIST_SPLITS},
    }


DATASETS: dict[str, DatasetSpec] = _registry()
"""The known datasets by canonical name. Tests may replace entries (e.g. the URLs)."""

_ALIASES = {"fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10",
            "emnist": "emnist-balanced",
            "cifar-100": "cifar100", "kuzushiji-mnist": "kmnist"}


def available() -> list[str]:
    """Names accepted by :func:`load`."""
    return sorted(DATASETS)


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, _ALIASES.get(key.replace("-", ""), key))
    if key not in DATASETS:
        raise ValueError(f"Expected a dataset name in {available()}. Received: name={name!r}")
    return key


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/gradcraft`` if that variable is set, else ``~/.cache/gradcraft``."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "gradcraft"


def search_roots() -> list[Path]:
    """The folders whose ``<name>/`` subfolder :func:`load` searches, in order."""
    roots = [Path(p).expanduser() for p in os.environ.get("GRADCRAFT_DATA", "").split(os.pathsep) if p]
    return [*roots, cache_dir(), *SYSTEM_DIRS]


def _folder_name(spec: DatasetSpec) -> str:
    return spec.name


def _how_to_get(spec: DatasetSpec, key: str, searched: list[Path], target: Path) -> str:
    lines = [f"Searched: {', '.join(str(p) for p in searched)}.", "To get it, do one of:"]
    if spec.apt:
        lines.append(f"  * Debian/Ubuntu: sudo apt-get install {spec.apt}   (installs /usr/share/datasets/"
                     f"{spec.name}/)")
    urls = " ".join(r.url for r in spec.remotes)
    sums = ", ".join(f"{r.checksum[0]} {r.checksum[1]}" for r in spec.remotes)
    lines.append(f"  * download {urls} into {target}/ (checksums: {sums})")
    lines.append(f"  * set GRADCRAFT_DATA to a folder that holds {spec.name}/ with those files")
    lines.append(f"  * or run gradcraft.data.load({key!r}, download=True) with network access "
                 f"(see {spec.homepage})")
    return "\n".join(lines)


def load(name: str, split: str = "train", root: str | os.PathLike | None = None, download: bool = True,
         progress: bool = True) -> ArrayDataset:
    """Load a standard dataset split as an :class:`ArrayDataset`.

    Args:
        name: ``"fashion-mnist"``, ``"mnist"``, ``"kmnist"``, ``"cifar10"``, ``"cifar100"``,
            ``"cifar100-coarse"`` (the 20 superclasses) or ``"emnist-<split>"`` (see above).
        split: ``"train"`` or ``"test"``.
        root: search only ``root/<name>/`` (and download there) instead of the usual places.
        download: fetch missing files from the canonical URLs (checksum-verified).
        progress: show a download progress bar (needs ``rich``).

    Returns:
        ``ArrayDataset``: ``x`` uint8 ``(N, C, H, W)``, ``y`` int64 ``(N,)``, ``classes`` the names.
        Fashion-MNIST: ``x`` ``(60000, 1, 28, 28)`` for ``"train"``, ``(10000, 1, 28, 28)`` for
        ``"test"``.

    Raises:
        DatasetNotFoundError: not on disk and not downloadable; the message says how to get it.
        ChecksumError: a download did not match its published checksum.
        DatasetError: a file on disk is corrupt or truncated.
    """
    key = _canonical(name)
    if split not in ("train", "test"):
        raise ValueError(f"Expected split 'train' or 'test'. Received: split={split!r}")
    spec = DATASETS[key]
    roots = [Path(root).expanduser()] if root is not None else search_roots()
    folders = [r / _folder_name(spec) for r in roots]
    for folder in folders:
        reader = spec.find(folder, split)
        if reader is not None:
            return reader()
    target = (Path(root).expanduser() if root is not None else cache_dir()) / _folder_name(spec)
    if not download:
        raise DatasetNotFoundError(
            f"Expected dataset {key!r} (split {split!r}) on disk. Received: no folder has its files.\n"
            + _how_to_get(spec, key, folders, target)
        )
    try:
        for remote in spec.remotes:
            if not (target / remote.filename).exists():
                download_file(remote.url, target / remote.filename, remote.checksum, progress=progress)
    except DatasetError as exc:
        if type(exc) is not DatasetError or not isinstance(exc.__cause__, OSError):
            raise  # a checksum mismatch or a broken transfer is not "offline"
        raise DatasetNotFoundError(
            f"Expected dataset {key!r} (split {split!r}) on disk or downloadable. Received: not found, and "
            f"the download failed ({exc.__cause__}).\n" + _how_to_get(spec, key, folders, target)
        ) from exc
    if spec.prepare is not None:
        spec.prepare(target)
    reader = spec.find(target, split)
    if reader is None:
        raise DatasetError(f"Expected the downloaded files of {key!r} in '{target}'. Received: they are "
                           "missing after download")
    return reader()

