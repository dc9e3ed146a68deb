"""Download a file with checksum verification, an optional progress bar, and atomic placement.

The file is streamed into ``<dest>.part`` in the destination folder while its digest is
computed; only when the digest equals the published one (MD5 or SHA-256, whichever the
dataset's authors publish) is it renamed to ``dest``. A mismatch deletes the partial file and
raises :class:`~gradcraft.data.ChecksumError`, so a corrupt or tampered download never lands
in the cache. A progress bar is shown with ``rich`` when it is installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from gradcraft.data.errors import ChecksumError, DatasetError

__all__ = ["download", "file_digest"]

_CHUNK = 1 << 20
_ALGORITHMS = ("md5", "sha1", "sha256")


def _hasher(algorithm: str) -> Any:
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"Expected a checksum algorithm in {_ALGORITHMS}. Received: {algorithm!r}")
    return hashlib.new(algorithm, usedforsecurity=False)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The hex digest of a file's content (``md5``, ``sha1`` or ``sha256``)."""
    h = _hasher(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def _progress(description: str, total: int | None, enabled: bool) -> Any:
    """Yield ``advance(nbytes)``; draws a rich progress bar when enabled and rich is installed."""
    if enabled:
        try:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
        except ImportError:
            enabled = False
    if not enabled:
        yield lambda n: None
        return
    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    from rich.console import Console

    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def download(url: str, dest: str | os.PathLike, checksum: tuple[str, str] | None = None,
             progress: bool = True, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest``, verifying ``checksum = (algorithm, hexdigest)``.

    Args:
        url: the http(s) address.
        dest: the final file path; its folder is created.
        checksum: ``("md5", "…")`` or ``("sha256", "…")``; ``None`` skips verification.
        progress: show a progress bar on stderr (needs ``rich``; silently off otherwise).
        timeout: socket timeout in seconds.

    Returns:
        ``Path(dest)``.

    Raises:
        ChecksumError: the content's digest differs from ``checksum`` (nothing is kept).
        DatasetError: the server could not be reached or the transfer broke off
            (``urllib`` errors are chained).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    algorithm, expected = (checksum[0].lower(), checksum[1].lower()) if checksum else ("sha256", None)
    h = _hasher(algorithm)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            received = 0
            show = progress and sys.stderr is not None
            with open(part, "wb") as out, _progress(f"Downloading {dest.name}", total, show) as advance:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    h.update(chunk)
                    received += len(chunk)
                    advance(len(chunk))
        if total is not None and received != total:
            raise DatasetError(
                f"Expected {total} bytes from {url}. Received: {received} bytes (connection broke off)"
            )
    except (urllib.error.URLError, OSError) as exc:
        part.unlink(missing_ok=True)
        raise DatasetError(f"Expected to download {url} to '{dest}'. Received: {exc}") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    digest = h.hexdigest()
    if expected is not None and digest != expected:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"Expected {algorithm} {expected} for {url}. Received: {digest}; the download was "
            "deleted (corrupt transfer, or the file on the server changed)"
        )
    os.replace(part, dest)
    return dest
