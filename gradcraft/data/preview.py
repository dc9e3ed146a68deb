"""Write a PNG grid of original and augmented samples, to see what augmentation does.

The PNG is encoded here with :mod:`zlib` (8-bit grey or RGB, one IDAT chunk), so previews need
no optional package at all.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gradcraft.data.loader import accepts_generator, to_float

__all__ = ["make_grid", "preview_augmentations", "write_png"]


def write_png(path: str | os.PathLike, image: Any) -> Path:
    """Write an image ``(H, W)`` / ``(H, W, 1)`` (grey) or ``(H, W, 3)`` (RGB), ``uint8``, as PNG."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise TypeError(f"Expected uint8 pixels. Received: dtype={img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        color = 0
    elif img.ndim == 3 and img.shape[2] == 3:
        color = 2
    else:
        raise ValueError(f"Expected (H, W), (H, W, 1) or (H, W, 3). Received: shape={img.shape}")
    h, w = img.shape[:2]
    rows = np.ascontiguousarray(img).reshape(h, -1)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()  # filter 0 per row

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    path = Path(path)
    path.write_bytes(png)
    return path


def make_grid(rows: list[np.ndarray], pad: int = 2, value: float = 1.0) -> np.ndarray:
    """Tile image batches into one picture: ``rows[r][k]`` at row ``r``, column ``k``.

    Args:
        rows: batches ``(K, C, H, W)`` (C = 1 or 3, float in [0, 1] or uint8), same shape.
        pad: pixels between tiles; ``value`` is their brightness in [0, 1].

    Returns:
        ``uint8`` ``(R·(H+pad)+pad, K·(W+pad)+pad, C)``.
    """
    batches = [to_float(np.asarray(r), np.float64) for r in rows]
    k, c, h, w = batches[0].shape
    if any(b.shape != batches[0].shape for b in batches) or c not in (1, 3):
        raise ValueError(
            f"Expected rows of equal shape (K, 1 or 3, H, W). Received: {[b.shape for b in batches]}")
    grid = np.full((len(rows) * (h + pad) + pad, k * (w + pad) + pad, c), value, dtype=np.float64)
    for r, b in enumerate(batches):
        for j in range(k):
            y, x = pad + r * (h + pad), pad + j * (w + pad)
            grid[y:y + h, x:x + w] = np.moveaxis(b[j], 0, -1)
    return np.round(np.clip(grid, 0.0, 1.0) * 255).astype(np.uint8)


def preview_augmentations(path: str | os.PathLike, x: Any, transform: Callable[..., Any], n: int = 8,
                          repeats: int = 3, generator: np.random.Generator | None = None,
                          scale: int = 1) -> Path:
    """Save a PNG: the first ``n`` images in the top row, ``repeats`` augmented versions below.

    Args:
        path: the ``.png`` to write.
        x: images ``(N, C, H, W)`` (uint8 or float in [0, 1]).
        transform: an augmentation (given ``generator`` if it accepts one); its output must keep
            the input's shape (crop-resizing ones may change ``H, W``; they are then shown at
            their own size in separate rows of equal size).
        generator: the ``numpy.random.Generator`` (default ``numpy.random.default_rng(0)``).
        scale: integer magnification (nearest neighbour), e.g. 4 for 28 × 28 images.
    """
    originals = to_float(np.asarray(x)[:n])
    gen = np.random.default_rng(0) if generator is None else generator
    rows = [originals]
    for _ in range(repeats):
        out = transform(originals, generator=gen) if accepts_generator(transform) else transform(originals)
        rows.append(np.asarray(out))
    shapes = {r.shape for r in rows}
    if len(shapes) > 1:  # e.g. a crop to a smaller size: show originals resized by nearest neighbour
        h, w = rows[1].shape[-2:]
        yi = (np.arange(h) * originals.shape[2] // h)[:, None]
        xi = (np.arange(w) * originals.shape[3] // w)[None, :]
        rows[0] = originals[:, :, yi, xi]
    grid = make_grid(rows)
    if scale > 1:
        grid = grid.repeat(int(scale), axis=0).repeat(int(scale), axis=1)
    return write_png(path, grid)
