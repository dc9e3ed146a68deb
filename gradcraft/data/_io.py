"""Small file helpers shared by the readers: read whole files, gunzip, wrap OS errors."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

from gradcraft.data.errors import DatasetError

__all__ = ["read_bytes"]

_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: str | os.PathLike, decompress: bool = True) -> bytes:
    """Return the contents of ``path``, gunzipped when the file starts with the gzip magic.

    Compression is detected from the content, not the file name, so ``x.gz`` files that were
    already decompressed (some browsers do that) and raw files both work.

    Raises:
        DatasetNotFoundError: if the file does not exist.
        DatasetError: if it cannot be read or its gzip stream is corrupt or truncated.
    """
    from gradcraft.data.errors import DatasetNotFoundError

    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DatasetNotFoundError(
            f"Expected an existing file. Received: path='{p}' does not exist"
        ) from None
    except OSError as exc:
        raise DatasetError(f"Expected a readable file. Received: path='{p}' ({exc})") from exc
    if decompress and raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(
                f"Expected a complete gzip stream in '{p}'. Received: a corrupt or truncated file "
                f"of {len(raw)} bytes ({exc})"
            ) from exc
    return raw
