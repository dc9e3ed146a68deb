"""Image augmentation, vectorized over the batch, on float NCHW arrays.

Every transform maps a batch ``x`` of shape ``(N, C, H, W)`` (float, pixels in ``[0, 1]`` as the
:class:`~gradcraft.data.DataLoader` produces them) to a new batch, drawing a *different* random
parameter for every sample, from an explicit ``numpy.random.Generator``: the one passed to the
call (``t(x, generator=g)``, which the loader does for every batch), else the one given to the
constructor, else the library-wide generator (:func:`gradcraft.manual_seed`).

Geometric transforms compute, for every output pixel, where it comes from in the input, and
read all samples' pixels with one bilinear gather (:func:`sample_bilinear`): an output pixel at
``(i, j)`` reading the input at the real position ``(y, x)`` gets

    ``(1−a)(1−b)·I[y₀, x₀] + (1−a)b·I[y₀, x₀+1] + a(1−b)·I[y₀+1, x₀] + ab·I[y₀+1, x₀+1]``

with ``y₀ = ⌊y⌋, a = y − y₀, x₀ = ⌊x⌋, b = x − x₀``; positions outside the image read ``fill``.

Transforms here: flips, :class:`RandomCrop` (with padding), :class:`RandomResizedCrop`,
:class:`ScaleJitter`, :class:`RandomAffine` (translation, rotation, shear, stretch, zoom),
:class:`ElasticDistortion`, :class:`LensDistortion`, :class:`ColorJitter`,
:class:`PCAColorAugmentation`, :class:`GaussianNoise`, :class:`Cutout`, :class:`RandomErasing`,
and the combinators :class:`Compose`, :class:`RandomApply`, :class:`OneOf`. Batch mixing
(Mixup, CutMix) lives in :mod:`gradcraft.data.mixing`, 1-D signals in :mod:`gradcraft.data.signal`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from gradcraft import backend

__all__ = [
    "ColorJitter",
    "Compose",
    "Cutout",
    "ElasticDistortion",
    "GaussianNoise",
    "LensDistortion",
    "OneOf",
    "PCAColorAugmentation",
    "RandomAffine",
    "RandomApply",
    "RandomCrop",
    "RandomErasing",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "RandomVerticalFlip",
    "ScaleJitter",
    "Transform",
    "affine_grid",
    "sample_bilinear",
]


# ============================================================================ base classes
class Transform:
    """Base class of random batch transforms.

    Subclasses implement ``apply(x, generator) -> x``. ``__call__(x, generator=None)`` picks the
    generator (call argument, else constructor's, else library-wide) and checks the input.
    """

    generator: np.random.Generator | None = None

    def __call__(self, x: Any, generator: np.random.Generator | None = None) -> np.ndarray:
        gen = generator if generator is not None else (
            self.generator if self.generator is not None else backend.generator())
        x = np.asarray(x)
        if x.dtype.kind != "f":
            raise TypeError(f"Expected a float batch (convert uint8 images with to_float). "
                            f"Received: dtype={x.dtype}")
        return self.apply(x, gen)

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = {k: v for k, v in vars(self).items() if k != "generator" and not k.startswith("_")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"


def _images(x: np.ndarray, name: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"Expected images of shape (N, C, H, W) for {name}. Received: shape={x.shape}")


def _call(t: Callable[..., Any], x: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    from gradcraft.data.loader import accepts_generator

    return t(x, generator=gen) if accepts_generator(t) else t(x)


def _probability(p: float) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"Expected a probability in [0, 1]. Received: p={p!r}")
    return float(p)


def _range(value: Any, name: str, centre: float | None = None,
           low: float | None = None) -> tuple[float, float]:
    """``v -> (centre − v, centre + v)`` (or ``(−v, v)``) for a scalar; a pair is taken as given."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or float(value[0]) > float(value[1]):
            raise ValueError(f"Expected {name} as (low, high) with low <= high. Received: {name}={value!r}")
        lo, hi = float(value[0]), float(value[1])
    else:
        v = float(value)
        if v < 0:
            raise ValueError(f"Expected a non-negative {name}. Received: {name}={value!r}")
        c = 0.0 if centre is None else centre
        lo, hi = c - v, c + v
    if low is not None and lo < low:
        raise ValueError(f"Expected {name} >= {low}. Received: {name}={value!r}")
    return lo, hi


class Compose(Transform):
    """Apply transforms in order: ``Compose([f, g])(x) = g(f(x))``, all with the same generator.

    Entries may be any callables ``f(x)`` (e.g. a fitted preprocessor); those that accept a
    ``generator`` keyword receive it.
    """

    def __init__(self, transforms: Sequence[Callable[..., Any]],
                 generator: np.random.Generator | None = None) -> None:
        self.transforms = list(transforms)
        self.generator = generator

    def __call__(self, x: Any, generator: np.random.Generator | None = None) -> np.ndarray:
        gen = generator if generator is not None else (
            self.generator if self.generator is not None else backend.generator())
        x = np.asarray(x)
        for t in self.transforms:
            x = _call(t, x, gen)
        return x


class RandomApply(Transform):
    """Apply ``transform`` to each sample independently with probability ``p``.

    The chosen samples are transformed together as one sub-batch; the others pass unchanged.
    """

    def __init__(self, transform: Callable[..., Any], p: float = 0.5,
                 generator: np.random.Generator | None = None) -> None:
        self.transform = transform
        self.p = _probability(p)
        self.generator = generator

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        mask = generator.random(x.shape[0]) < self.p
        if not mask.any():
            return x
        out = x.copy()
        out[mask] = _call(self.transform, x[mask], generator)
        return out


class OneOf(Transform):
    """Apply exactly one of ``transforms`` to each sample, chosen with probabilities ``p``."""

    def __init__(self, transforms: Sequence[Callable[..., Any]], p: Sequence[float] | None = None,
                 generator: np.random.Generator | None = None) -> None:
        if not transforms:
            raise ValueError("Expected at least one transform. Received: an empty list")
        self.transforms = list(transforms)
        probs = np.full(len(transforms), 1.0 / len(transforms)) if p is None else np.asarray(p, float)
        if probs.shape != (len(transforms),) or np.any(probs < 0) or probs.sum() <= 0:
            raise ValueError(f"Expected {len(transforms)} non-negative probabilities. Received: p={p!r}")
        self.p = probs / probs.sum()
        self.generator = generator

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        choice = generator.choice(len(self.transforms), size=x.shape[0], p=self.p)
        out = np.empty_like(x)
        for k, t in enumerate(self.transforms):
            mask = choice == k
            if mask.any():
                out[mask] = _call(t, x[mask], generator)
        return out


# ============================================================================ sampling core
def sample_bilinear(x: np.ndarray, ys: np.ndarray, xs: np.ndarray, fill: float = 0.0,
                    mode: str = "constant") -> np.ndarray:
    """Read ``x`` at real-valued positions with bilinear interpolation, for the whole batch at once.

    Args:
        x: images ``(N, C, H, W)``.
        ys, xs: source rows and columns, ``(N, H_out, W_out)`` (pixel units, 0 = first pixel
            centre); the same positions are used for every channel.
        fill: value outside the image (``mode="constant"``).
        mode: ``"constant"`` (outside reads ``fill``, blending over one pixel at the border),
            ``"edge"`` (nearest border pixel) or ``"reflect"`` (mirror about the border pixels).

    Returns:
        ``(N, C, H_out, W_out)`` of ``x``'s dtype. There is no loop over images: each of the four
        neighbours is gathered for every output pixel of the whole batch by one ``numpy.take`` on
        the flattened batch (four flat gathers measured 3–6× faster than one gather with a stacked
        ``(4, N, C, P)`` index).
    """
    if mode not in ("constant", "edge", "reflect"):
        raise ValueError(f"Expected mode 'constant', 'edge' or 'reflect'. Received: mode={mode!r}")
    n, c, h, w = x.shape
    one = np.float32(1.0)
    ys = np.asarray(ys, dtype=np.float32)
    xs = np.asarray(xs, dtype=np.float32)
    ho, wo = ys.shape[1], ys.shape[2]
    # pad by one pixel (fill, or the border pixel), so every neighbour index below is valid
    if mode == "constant":
        src = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=fill)
        yy = np.clip(ys + one, 0.0, h + 1.0)
        xx = np.clip(xs + one, 0.0, w + 1.0)
    else:
        src = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
        if mode == "reflect":
            ys, xs = _reflect(ys, h), _reflect(xs, w)
        yy = np.clip(ys, 0.0, h - 1.0) + one
        xx = np.clip(xs, 0.0, w - 1.0) + one
    ww = w + 2
    y0 = np.minimum(np.floor(yy), np.float32(h))
    x0 = np.minimum(np.floor(xx), np.float32(w))
    p = ho * wo
    a = (yy - y0).astype(x.dtype, copy=False).reshape(n, 1, p)
    b = (xx - x0).astype(x.dtype, copy=False).reshape(n, 1, p)
    # flat index of the top-left neighbour in src.reshape(-1): ((n·C + c)·(H+2) + y)·(W+2) + x
    idx = (y0 * ww + x0).astype(np.intp).reshape(n, 1, p)
    idx = idx + (np.arange(n)[:, None, None] * c + np.arange(c)[None, :, None]) * ((h + 2) * ww)
    flat = src.reshape(-1)
    top, top_right = flat.take(idx), flat.take(idx + 1)
    bottom, bottom_right = flat.take(idx + ww), flat.take(idx + (ww + 1))
    top_right -= top
    top_right *= b
    top += top_right  # (1−b)·I[y₀,x₀] + b·I[y₀,x₀+1]
    bottom_right -= bottom
    bottom_right *= b
    bottom += bottom_right
    bottom -= top
    bottom *= a
    top += bottom  # (1−a)·top + a·bottom
    return top.reshape(n, c, ho, wo)


def _reflect(v: np.ndarray, size: int) -> np.ndarray:
    if size == 1:
        return np.zeros_like(v)
    period = 2.0 * (size - 1)
    v = np.mod(v, period)
    return np.where(v > size - 1, period - v, v)


def affine_grid(matrices: np.ndarray, out_shape: tuple[int, int],
                in_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Source positions for per-sample affine maps about the image centre.

    ``matrices`` ``(N, 2, 3)`` map an *output* pixel, in coordinates centred on the output
    centre ``((H_out−1)/2, (W_out−1)/2)`` as ``(x, y, 1)``, to the *input* pixel position relative
    to the input centre: ``[x_s, y_s] = A [x_o, y_o, 1]``. Returns ``(ys, xs)``, each
    ``(N, H_out, W_out)``, for :func:`sample_bilinear`.
    """
    ho, wo = out_shape
    hi, wi = in_shape if in_shape is not None else out_shape
    m = np.asarray(matrices, dtype=np.float32)
    yo = (np.arange(ho, dtype=np.float32) - (ho - 1) / 2.0)[None, :, None]
    xo = (np.arange(wo, dtype=np.float32) - (wo - 1) / 2.0)[None, None, :]
    xs = m[:, 0, 0, None, None] * xo + m[:, 0, 1, None, None] * yo + m[:, 0, 2, None, None] + (wi - 1) / 2.0
    ys = m[:, 1, 0, None, None] * xo + m[:, 1, 1, None, None] * yo + m[:, 1, 2, None, None] + (hi - 1) / 2.0
    return ys, xs


def _box_grid(top: np.ndarray, left: np.ndarray, height: np.ndarray, width: np.ndarray,
              out_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Source positions that resample the box ``[top, top+height) × [left, left+width)`` to ``out_shape``."""
    ho, wo = out_shape
    i = (np.arange(ho, dtype=np.float32) + 0.5)[None, :, None]
    j = (np.arange(wo, dtype=np.float32) + 0.5)[None, None, :]
    ys = top[:, None, None] + i * (height / ho)[:, None, None] - 0.5
    xs = left[:, None, None] + j * (width / wo)[:, None, None] - 0.5
    ys, xs = np.broadcast_arrays(ys, xs)
    return ys.astype(np.float32), xs.astype(np.float32)


# ============================================================================ flips and crops
class RandomHorizontalFlip(Transform):
    """Mirror each image left–right with probability ``p`` (``x[..., ::-1]``)."""

    def __init__(self, p: float = 0.5, generator: np.random.Generator | None = None) -> None:
        self.p = _probability(p)
        self.generator = generator

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        mask = generator.random(x.shape[0]) < self.p
        return np.where(mask.reshape((-1,) + (1,) * (x.ndim - 1)), x[..., ::-1], x)


class RandomVerticalFlip(Transform):
    """Mirror each image top–bottom with probability ``p`` (``x[..., ::-1, :]``)."""

    def __init__(self, p: float = 0.5, generator: np.random.Generator | None = None) -> None:
        self.p = _probability(p)
        self.generator = generator

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        _images(x, "RandomVerticalFlip")
        mask = generator.random(x.shape[0]) < self.p
        return np.where(mask[:, None, None, None], x[..., ::-1, :], x)


def _size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"Expected a positive output size. Received: size={size!r}")
    return int(h), int(w)


class RandomCrop(Transform):
    """Pad by ``padding`` pixels, then cut a random ``size`` window from each image.

    The CIFAR recipe is ``RandomCrop(32, padding=4)``: every image is shifted by up to 4 pixels.
    One gather with per-sample offsets crops the whole batch.

    Args:
        size: output ``(H_out, W_out)`` or an int; default the input size.
        padding: pixels added on each side.
        fill: value of constant padding.
        padding_mode: ``"constant"``, ``"edge"`` or ``"reflect"`` (as ``numpy.pad``).
    """

    def __init__(self, size: Any = None, padding: int = 0, fill: float = 0.0, padding_mode: str = "constant",
                 generator: np.random.Generator | None = None) -> None:
        if int(padding) < 0:
            raise ValueError(f"Expected padding >= 0. Received: padding={padding}")
        if padding_mode not in ("constant", "edge", "reflect"):
            raise ValueError(
                f"Expected padding_mode 'constant', 'edge' or 'reflect'. Received: {padding_mode!r}")
        self.size = _size(size)
        self.padding = int(padding)
        self.fill = float(fill)
        self.padding_mode = padding_mode
        self.generator = generator

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        _images(x, "RandomCrop")
        n, _, h, w = x.shape
        ho, wo = self.size or (h, w)
        p = self.padding
        if p:
            kw = {"constant_values": self.fill} if self.padding_mode == "constant" else {}
            x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode=self.padding_mode, **kw)
        hp, wp = x.shape[2], x.shape[3]
        if ho > hp or wo > wp:
            raise ValueError(f"Expected a crop no larger than the padded image {(hp, wp)}. "
                             f"Received: size={(ho, wo)}")
        top = generator.integers(0, hp - ho + 1, size=n)
        left = generator.integers(0, wp - wo + 1, size=n)
        rows = (top[:, None] + np.arange(ho))[:, None, :, None]
        cols = (left[:, None] + np.arange(wo))[:, None, None, :]
        return x[np.arange(n)[:, None, None, None], np.arange(x.shape[1])[None, :, None, None], rows, cols]


class RandomResizedCrop(Transform):
    """Crop a random box of random area and aspect ratio, resized to ``size`` (Inception / ResNet).

    For each image, the box area is ``s · H · W`` with ``s ~ U(scale)`` and its aspect ratio
    ``w/h = exp(U(log ratio))``; the box is clipped to the image and placed uniformly, then
    resampled bilinearly to ``size``.
    """

    def __init__(self, size: Any = None, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 generator: np.random.Generator | None = None) -> None:
        lo, hi = _range(scale, "scale", low=0.0)
        if hi > 1.0 or lo <= 0.0:
            raise ValueError(f"Expected 0 < scale[0] <= scale[1] <= 1. Received: scale={scale!r}")
        rlo, rhi = _range(ratio, "ratio")
        if rlo <= 0:
            raise ValueError(f"Expected positive aspect ratios. Received: ratio={ratio!r}")
        self.size = _size(size)
        self.scale = (lo, hi)
        self.ratio = (rlo, rhi)
        self.generator = generator

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        _images(x, "RandomResizedCrop")
        n, _, h, w = x.shape
        area = generator.uniform(*self.scale, size=n) * h * w
        log_r = generator.uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), size=n)
        r = np.exp(log_r)
        bw = np.clip(np.sqrt(area * r), 1.0, w)
        bh = np.clip(np.sqrt(area / r), 1.0, h)
        top = generator.uniform(0.0, 1.0, size=n) * (h - bh)
        left = generator.uniform(0.0, 1.0, size=n) * (w - bw)
        ys, xs = _box_grid(top, left, bh, bw, self.size or (h, w))
        return sample_bilinear(x, ys, xs, mode="edge")


class ScaleJitter(Transform):
    """ResNet-style scale augmentation: rescale so the shorter side is ``S ~ U(short_side)``, then
    take a random ``crop`` window (He et al. 2016 use ``S ∈ [256, 480]``, crop 224).

    Done in one resampling: the crop window corresponds to a box of
    ``crop · min(H, W) / S`` input pixels, placed uniformly (when the rescaled image is smaller
    than the crop, the box overhangs evenly and the overhang reads ``fill``).
    """

    def __init__(self, short_side: tuple[float, float], crop: Any, fill: float = 0.0,
                 generator: np.random.Generator | None = None) -> None:
        lo, hi = _range(short_side, "short_side", low=1e-6)
        if lo <= 0:
            raise ValueError(f"Expected positive short sides. Received: short_side={short_side!r}")
        self.short_side = (lo, hi)
        self.crop = _size(crop)
        self.fill = float(fill)
        self.generator = generator

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        _images(x, "ScaleJitter")
        n, _, h, w = x.shape
        ho, wo = self.crop
        factor = min(h, w) / generator.uniform(*self.short_side, size=n)  # input pixels per output pixel
        bh, bw = ho * factor, wo * factor
        u, v = generator.random(n), generator.random(n)
        top = np.where(bh <= h, u * (h - bh), (h - bh) / 2.0)
        left = np.where(bw <= w, v * (w - bw), (w - bw) / 2.0)
        ys, xs = _box_grid(top, left, bh, bw, (ho, wo))
        return sample_bilinear(x, ys, xs, fill=self.fill)


# ============================================================================ affine and warps
class RandomAffine(Transform):
    """Random affine maps about the image centre: rotation, translation, shear, zoom and stretch.

    For each image the forward map is ``p' = T + R(−θ) · Sh(φ) · diag(s·e, s/e) · p`` (centred
    ``(x, y)`` coordinates, ``y`` pointing down, so a positive ``θ`` turns the picture
    counter-clockwise, as in torchvision and Pillow), with ``θ ~ U(degrees)``, ``φ ~ U(shear)``
    (x-shear, ``Sh = [[1, tan φ], [0, 1]]``),
    zoom ``s ~ U(scale)``, stretch ``e = exp(U(log stretch))`` (aspect change at fixed area) and
    translation ``T = (U(±translate[0])·W, U(±translate[1])·H)``. The output reads the input at
    ``p = M⁻¹ (p' − T)`` by bilinear sampling, all images in one gather.

    Args:
        degrees: rotation range in degrees, ``d`` meaning ``(−d, d)``.
        translate: maximal shift as fractions of ``(W, H)``.
        scale: zoom range, e.g. ``(0.9, 1.1)``.
        shear: shear angle range in degrees.
        stretch: aspect-ratio factor range, e.g. ``(0.9, 1.1)``.
        fill: value outside the image; ``mode`` as in :func:`sample_bilinear`.
    """

    def __init__(self, degrees: Any = 0.0, translate: tuple[float, float] = (0.0, 0.0),
                 scale: tuple[float, float] = (1.0, 1.0), shear: Any = 0.0,
                 stretch: tuple[float, float] = (1.0, 1.0), fill: float = 0.0, mode: str = "constant",
                 generator: np.random.Generator | None = None) -> None:
        self.degrees = _range(degrees, "degrees")
        tx, ty = (translate, translate) if np.isscalar(translate) else translate
        if not (0 <= float(tx) <= 1 and 0 <= float(ty) <= 1):
            raise ValueError(f"Expected translate fractions in [0, 1]. Received: translate={translate!r}")
        self.translate = (float(tx), float(ty))
        self.scale = _range(scale, "scale", low=1e-6)
        self.shear = _range(shear, "shear")
        if max(abs(self.shear[0]), abs(self.shear[1])) >= 90:
            raise ValueError(f"Expected |shear| < 90 degrees. Received: shear={shear!r}")
        self.stretch = _range(stretch, "stretch", low=1e-6)
        self.fill = float(fill)
        self.mode = mode
        self.generator = generator

    def matrices(self, n: int, h: int, w: int, generator: np.random.Generator) -> np.ndarray:
        """The ``(N, 2, 3)`` inverse maps (output → input, centred) for ``n`` random draws."""
        theta = -np.deg2rad(generator.uniform(*self.degrees, size=n))  # positive = counter-clockwise
        phi = np.deg2rad(generator.uniform(*self.shear, size=n))
        s = generator.uniform(*self.scale, size=n)
        e = np.exp(generator.uniform(math.log(self.stretch[0]), math.log(self.stretch[1]), size=n))
        tx = generator.uniform(-self.translate[0], self.translate[0], size=n) * w
        ty = generator.uniform(-self.translate[1], self.translate[1], size=n) * h
        return _inverse_affine(theta, phi, s * e, s / e, tx, ty)

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        _images(x, "RandomAffine")
        n, _, h, w = x.shape
        ys, xs = affine_grid(self.matrices(n, h, w, generator), (h, w))
        return sample_bilinear(x, ys, xs, fill=self.fill, mode=self.mode)


def _inverse_affine(theta: np.ndarray, phi: np.ndarray, sx: np.ndarray, sy: np.ndarray,
                    tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """Inverse of ``p' = R(θ) Sh(φ) diag(sx, sy) p + t`` as ``(N, 2, 3)`` matrices."""
    c, s, k = np.cos(theta), np.sin(theta), np.tan(phi)
    # M = R · Sh · S = [[c, c·k − s], [s, s·k + c]] · diag(sx, sy)
    m00, m01 = c * sx, (c * k - s) * sy
    m10, m11 = s * sx, (s * k + c) * sy
    det = m00 * m11 - m01 * m10
    i00, i01, i10, i11 = m11 / det, -m01 / det, -m10 / det, m00 / det
    out = np.empty((theta.shape[0], 2, 3), dtype=np.float64)
    out[:, 0, 0], out[:, 0, 1] = i00, i01
    out[:, 1, 0], out[:, 1, 1] = i10, i11
    out[:, 0, 2] = -(i00 * tx + i01 * ty)
    out[:, 1, 2] = -(i10 * tx + i11 * ty)
    return out


@lru_cache(maxsize=32)
def _gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """``(n, n)`` matrix ``G`` with ``(G f)_i = Σ_k g_k f_{reflect(i+k)}``, ``g`` a truncated Gaussian."""
    radius = max(1, math.ceil(3.0 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    rows = np.repeat(np.arange(n), offsets.size)
    cols = _reflect((np.arange(n)[:, None] + offsets[None, :]).astype(np.float64), n).astype(np.int64).ravel()
    g = np.zeros((n, n), dtype=np.float64)
    np.add.at(g, (rows, cols), np.tile(kernel, n))
    return g.astype(np.float32)


class ElasticDistortion(Transform):
    """Elastic distortion (Simard, Steinkraus & Platt 2003).

    For each image, draw displacement fields ``Δx, Δy ~ U(−1, 1)`` per pixel, smooth them with a
    Gaussian of std ``sigma`` (pixels) and scale by ``alpha``; the output pixel ``(i, j)`` reads
    the input at ``(i + Δy, j + Δx)``. Small ``sigma`` gives random noise, large ``sigma`` an
    almost rigid shift; the paper uses ``sigma = 4``, ``alpha = 34`` on 28 × 28 digits. The
    smoothing is two matrix products per field (``G_H · F · G_Wᵀ``, reflecting borders).
    """

    def __init__(self, alpha: float = 34.0, sigma: float = 4.0, fill: float = 0.0,
                 generator: np.random.Generator | None = None) -> None:
        if alpha < 0 or sigma <= 0:
            raise ValueError(f"Expected alpha >= 0 and sigma > 0. Received: alpha={alpha}, sigma={sigma}")
        self.alpha = float(alpha)
        self.sigma = float(sigma)
        self.fill = float(fill)
        self.generator = generator

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        _images(x, "ElasticDistortion")
        n, _, h, w = x.shape
        fields = generator.random(size=(2 * n, h, w), dtype=np.float32)
        fields *= 2.0
        fields -= 1.0  # U(−1, 1)
        gh, gw = _gaussian_matrix(h, self.sigma), _gaussian_matrix(w, self.sigma)
        # G_H · F · G_Wᵀ for all 2N fields as two single GEMMs (not 2N small ones)
        along_w = fields.reshape(-1, w) @ (gw.T * np.float32(self.alpha))
        along_h = gh @ along_w.reshape(2 * n, h, w).transpose(1, 0, 2).reshape(h, -1)
        smooth = along_h.reshape(h, 2, n, w).transpose(1, 2, 0, 3)  # (2, N, H, W): Δx, Δy
        rows = np.arange(h, dtype=np.float32)[None, :, None]
        cols = np.arange(w, dtype=np.float32)[None, None, :]
        return sample_bilinear(x, rows + smooth[1], cols + smooth[0], fill=self.fill)


class LensDistortion(Transform):
    """Radial (barrel / pincushion) lens distortion with a random coefficient per image.

    With centred coordinates normalised by the half-diagonal, ``r² = u² + v²``, the output at
    ``(u, v)`` reads the input at ``(u, v) · (1 + k r²)``, ``k ~ U(k_range)``. ``k > 0`` pulls
    content toward the centre at the edges (barrel), ``k < 0`` pushes it out (pincushion).
    """

    def __init__(self, k: Any = 0.2, fill: float = 0.0, mode: str = "constant",
                 generator: np.random.Generator | None = None) -> None:
        self.k = _range(k, "k")
        self.fill = float(fill)
        self.mode = mode
        self.generator = generator

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        _images(x, "LensDistortion")
        n, _, h, w = x.shape
        k = generator.uniform(*self.k, size=n).astype(np.float32)
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
        radius = math.hypot(cy, cx) or 1.0
        v = ((np.arange(h, dtype=np.float32) - cy) / radius)[None, :, None]
        u = ((np.arange(w, dtype=np.float32) - cx) / radius)[None, None, :]
        factor = 1.0 + k[:, None, None] * (u * u + v * v)
        return sample_bilinear(x, cy + v * radius * factor, cx + u * radius * factor, fill=self.fill,
                               mode=self.mode)


# ============================================================================ photometric
class ColorJitter(Transform):
    """Random brightness and contrast per image.

    ``x ← b · x`` with ``b ~ U(1 − brightness, 1 + brightness)``; then
    ``x ← m + c · (x − m)`` with ``c ~ U(1 − contrast, 1 + contrast)`` and ``m`` the image's
    mean over channels and pixels; finally clipped to ``clip`` (``None``: no clipping).
    """

    def __init__(self, brightness: Any = 0.0, contrast: Any = 0.0,
                 clip: tuple[float, float] | None = (0.0, 1.0),
                 generator: np.random.Generator | None = None) -> None:
        self.brightness = _range(brightness, "brightness", centre=1.0, low=0.0)
        self.contrast = _range(contrast, "contrast", centre=1.0, low=0.0)
        self.clip = clip
        self.generator = generator

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        n = x.shape[0]
        shape = (n,) + (1,) * (x.ndim - 1)
        b = generator.uniform(*self.brightness, size=n).astype(x.dtype).reshape(shape)
        c = generator.uniform(*self.contrast, size=n).astype(x.dtype).reshape(shape)
        out = x * b
        m = out.mean(axis=tuple(range(1, x.ndim)), keepdims=True)
        out = m + c * (out - m)
        return np.clip(out, *self.clip) if self.clip is not None else out


class PCAColorAugmentation(Transform):
    """AlexNet's colour augmentation (Krizhevsky et al. 2012, "fancy PCA").

    To every pixel of an image add ``[p₁ p₂ p₃] · [α₁λ₁, α₂λ₂, α₃λ₃]ᵀ`` where ``p_i, λ_i`` are
    the eigenvectors and eigenvalues of the ``C × C`` covariance of RGB pixel values over the
    training set and ``α_i ~ N(0, std²)`` is drawn once per image (``std = 0.1`` in the paper).

    Args:
        eigenvalues, eigenvectors: ``(C,)`` and ``(C, C)`` (columns); or call :meth:`fit`.
        std: the std of ``α``.
    """

    def __init__(self, eigenvalues: Any = None, eigenvectors: Any = None, std: float = 0.1,
                 clip: tuple[float, float] | None = None,
                 generator: np.random.Generator | None = None) -> None:
        self.eigenvalues = None if eigenvalues is None else np.asarray(eigenvalues, dtype=np.float64)
        self.eigenvectors = None if eigenvectors is None else np.asarray(eigenvectors, dtype=np.float64)
        self.std = float(std)
        self.clip = clip
        self.generator = generator

    def fit(self, x: Any, max_pixels: int = 1_000_000,
            generator: np.random.Generator | None = None) -> PCAColorAugmentation:
        """Estimate the channel covariance from training images ``(N, C, H, W)`` (uint8 or float).

        Uses at most ``max_pixels`` randomly chosen pixels, so fitting on a large set is cheap.
        """
        from gradcraft.data.loader import to_float

        x = np.asarray(x)
        _images(x, "PCAColorAugmentation.fit")
        n, c, h, w = x.shape
        gen = generator if generator is not None else backend.generator()
        total = n * h * w
        pick = gen.choice(total, size=min(total, max_pixels), replace=False) if total > max_pixels else None
        flat = np.moveaxis(x, 1, -1).reshape(-1, c)
        pixels = to_float(flat if pick is None else flat[pick], np.float64)
        cov = np.cov(pixels, rowvar=False).reshape(c, c)
        lam, vecs = np.linalg.eigh(cov)
        order = np.argsort(lam)[::-1]
        self.eigenvalues, self.eigenvectors = np.clip(lam[order], 0.0, None), vecs[:, order]
        return self

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        _images(x, "PCAColorAugmentation")
        if self.eigenvalues is None or self.eigenvectors is None:
            raise RuntimeError("PCAColorAugmentation needs eigenvalues and eigenvectors: call fit(x_train)")
        if self.eigenvalues.shape[0] != x.shape[1]:
            raise ValueError(f"Expected {self.eigenvalues.shape[0]} channels. Received: shape={x.shape}")
        alpha = generator.normal(0.0, self.std, size=(x.shape[0], x.shape[1]))
        shift = (alpha * self.eigenvalues) @ self.eigenvectors.T  # (N, C)
        out = x + shift.astype(x.dtype)[:, :, None, None]
        return np.clip(out, *self.clip) if self.clip is not None else out


class GaussianNoise(Transform):
    """Add ``N(0, σ²)`` noise per pixel, ``σ ~ U(std)`` per image (a scalar ``std`` is fixed)."""

    def __init__(self, std: Any = 0.05, clip: tuple[float, float] | None = None,
                 generator: np.random.Generator | None = None) -> None:
        lo, hi = (float(std), float(std)) if np.isscalar(std) else _range(std, "std")
        if lo < 0:
            raise ValueError(f"Expected std >= 0. Received: std={std!r}")
        self.std = (lo, hi)
        self.clip = clip
        self.generator = generator

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        sigma = generator.uniform(*self.std, size=x.shape[0]).reshape((-1,) + (1,) * (x.ndim - 1))
        dtype = np.float32 if x.dtype == np.float32 else np.float64
        noise = generator.standard_normal(size=x.shape, dtype=dtype)
        out = x + (noise * sigma).astype(x.dtype)
        return np.clip(out, *self.clip) if self.clip is not None else out


def _box_mask(top: np.ndarray, left: np.ndarray, bh: np.ndarray, bw: np.ndarray,
              h: int, w: int) -> np.ndarray:
    """``(N, 1, H, W)`` boolean masks of the integer boxes ``[top, top+bh) × [left, left+bw)``."""
    rows = np.arange(h)[None, :, None]
    cols = np.arange(w)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + bh)[:, None, None])
              & (cols >= left[:, None, None]) & (cols < (left + bw)[:, None, None]))
    return inside[:, None]


class Cutout(Transform):
    """Cutout (DeVries & Taylor 2017): blank a ``size × size`` square centred at a uniformly random
    pixel (so it may hang over the border) with probability ``p`` per image."""

    def __init__(self, size: int = 8, p: float = 1.0, value: float = 0.0,
                 generator: np.random.Generator | None = None) -> None:
        if int(size) < 1:
            raise ValueError(f"Expected size >= 1. Received: size={size}")
        self.size = int(size)
        self.p = _probability(p)
        self.value = float(value)
        self.generator = generator

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        _images(x, "Cutout")
        n, _, h, w = x.shape
        cy, cx = generator.integers(0, h, size=n), generator.integers(0, w, size=n)
        active = generator.random(n) < self.p
        half = self.size // 2
        size = np.where(active, self.size, 0)
        mask = _box_mask(cy - half, cx - half, size, size, h, w)
        return np.where(mask, x.dtype.type(self.value), x)


class RandomErasing(Transform):
    """Random erasing (Zhong et al. 2020): with probability ``p``, replace a random box of area
    ``s · H · W`` (``s ~ U(scale)``) and aspect ratio ``exp(U(log ratio))`` by ``value``
    (a number, or ``"random"`` for ``N(0, 1)`` noise per pixel)."""

    def __init__(self, p: float = 0.5, scale: tuple[float, float] = (0.02, 0.33),
                 ratio: tuple[float, float] = (0.3, 3.3), value: float | str = 0.0,
                 generator: np.random.Generator | None = None) -> None:
        self.p = _probability(p)
        self.scale = _range(scale, "scale", low=0.0)
        self.ratio = _range(ratio, "ratio", low=1e-6)
        if value != "random" and not isinstance(value, (int, float)):
            raise ValueError(f"Expected a number or 'random' as value. Received: value={value!r}")
        self.value = value
        self.generator = generator

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        _images(x, "RandomErasing")
        n, _, h, w = x.shape
        area = generator.uniform(*self.scale, size=n) * h * w
        r = np.exp(generator.uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), size=n))
        bh = np.clip(np.round(np.sqrt(area / r)), 1, h).astype(np.int64)
        bw = np.clip(np.round(np.sqrt(area * r)), 1, w).astype(np.int64)
        top = (generator.random(n) * (h - bh + 1)).astype(np.int64)
        left = (generator.random(n) * (w - bw + 1)).astype(np.int64)
        active = generator.random(n) < self.p
        mask = _box_mask(top, left, np.where(active, bh, 0), bw, h, w)
        if self.value == "random":
            fill = generator.standard_normal(size=x.shape).astype(x.dtype)
        else:
            fill = x.dtype.type(self.value)
        return np.where(mask, fill, x)
