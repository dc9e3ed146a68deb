"""Test-time augmentation: predict on several fixed views of each input and average.

A *view* is a deterministic map of an image batch ``(N, C, H, W) -> (N, C, H', W')``. The model
sees every view of the batch, and the class probabilities are averaged:

    ``p(y | x) = (1/V) Σ_v softmax(model(view_v(x)))``

Averaging probabilities (not logits) is the usual choice (Krizhevsky et al. 2012 average the
softmax over 10 crops; Simonyan & Zisserman 2015 over crops, flips and scales).

Views offered: :class:`Identity`, :class:`HorizontalFlip`, :class:`VerticalFlip`,
:class:`Crop` (the 4 corners and the centre: :func:`five_crops`, with flips: :func:`ten_crops`),
:class:`Zoom` (several scales) and :class:`Rotate` (fixed angles, e.g. −15°, 0°, 15°).

Example:
    >>> views = [Identity(), HorizontalFlip(), *rotations((-15, 15))]
    >>> probs = predict(model, x_test, views=views, batch_size=512)   # (N, K) Tensor
    >>> accuracy = (probs.numpy().argmax(1) == y_test).mean()
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gradcraft.autograd.grad_mode import no_grad
from gradcraft.autograd.tensor import Tensor
from gradcraft.data.augment import _inverse_affine, affine_grid, sample_bilinear
from gradcraft.data.loader import to_float

__all__ = [
    "Crop",
    "HorizontalFlip",
    "Identity",
    "Rotate",
    "VerticalFlip",
    "View",
    "Zoom",
    "default_views",
    "five_crops",
    "predict",
    "rotations",
    "scales",
    "ten_crops",
]


class View:
    """A deterministic transform of an image batch used at test time."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class Identity(View):
    """The input as it is."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x


class HorizontalFlip(View):
    """Left–right mirror image, optionally after another view."""

    def __init__(self, then: View | None = None) -> None:
        self.then = then

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = x if self.then is None else self.then(x)
        return np.ascontiguousarray(x[..., ::-1])


class VerticalFlip(View):
    """Top–bottom mirror image."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x[..., ::-1, :])


_POSITIONS = ("top_left", "top_right", "bottom_left", "bottom_right", "center")


class Crop(View):
    """A ``size`` window at a fixed ``position`` of the image padded by ``padding``.

    With ``padding = p`` and ``size`` equal to the image size, the corner crops are the image
    shifted by ``p`` pixels diagonally — the test-time counterpart of ``RandomCrop(padding=p)``.

    Args:
        position: one of ``top_left``, ``top_right``, ``bottom_left``, ``bottom_right``, ``center``.
        size: ``(h, w)`` or an int.
        padding: zero padding added on every side first.
    """

    def __init__(self, position: str, size: int | tuple[int, int], padding: int = 0) -> None:
        if position not in _POSITIONS:
            raise ValueError(f"Expected position in {_POSITIONS}. Received: position={position!r}")
        self.position = position
        if isinstance(size, (int, np.integer)):
            self.size = (int(size), int(size))
        else:
            self.size = tuple(int(s) for s in size)
        self.padding = int(padding)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        p = self.padding
        if p:
            x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        h, w = x.shape[-2:]
        ch, cw = self.size
        if ch > h or cw > w:
            raise ValueError(f"Expected a crop no larger than {(h, w)}. Received: size={self.size}")
        top = {"top_left": 0, "top_right": 0, "bottom_left": h - ch, "bottom_right": h - ch}.get(
            self.position, (h - ch) // 2)
        left = {"top_left": 0, "bottom_left": 0, "top_right": w - cw, "bottom_right": w - cw}.get(
            self.position, (w - cw) // 2)
        return np.ascontiguousarray(x[..., top:top + ch, left:left + cw])


class Zoom(View):
    """Zoom about the centre by ``scale`` (``> 1`` enlarges), keeping the size (bilinear)."""

    def __init__(self, scale: float) -> None:
        if scale <= 0:
            raise ValueError(f"Expected scale > 0. Received: scale={scale}")
        self.scale = float(scale)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        one = np.zeros(x.shape[0])
        m = _inverse_affine(one, one, one + self.scale, one + self.scale, one, one)
        ys, xs = affine_grid(m, x.shape[-2:])
        return sample_bilinear(x, ys, xs, mode="edge")


class Rotate(View):
    """Rotate by a fixed angle in degrees (positive = counter-clockwise) about the centre."""

    def __init__(self, degrees: float, fill: float = 0.0) -> None:
        self.degrees = float(degrees)
        self.fill = float(fill)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        zero, one = np.zeros(n), np.ones(n)
        m = _inverse_affine(np.full(n, -math.radians(self.degrees)), zero, one, one, zero, zero)
        ys, xs = affine_grid(m, x.shape[-2:])
        return sample_bilinear(x, ys, xs, fill=self.fill)


def five_crops(size: int | tuple[int, int], padding: int = 0) -> list[View]:
    """The four corner crops and the centre crop."""
    return [Crop(p, size, padding) for p in _POSITIONS]


def ten_crops(size: int | tuple[int, int], padding: int = 0) -> list[View]:
    """The five crops and their mirror images (AlexNet's test-time views)."""
    crops = five_crops(size, padding)
    return crops + [HorizontalFlip(then=c) for c in crops]


def scales(factors: Sequence[float] = (0.9, 1.0, 1.1)) -> list[View]:
    """One :class:`Zoom` per factor (``1.0`` gives the identity)."""
    return [Identity() if f == 1.0 else Zoom(f) for f in factors]


def rotations(degrees: Sequence[float] = (-15.0, 0.0, 15.0)) -> list[View]:
    """One :class:`Rotate` per angle (``0`` gives the identity)."""
    return [Identity() if d == 0 else Rotate(d) for d in degrees]


def default_views() -> list[View]:
    """The image and its mirror image."""
    return [Identity(), HorizontalFlip()]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict(model: Callable[[Tensor], Any], x: Any,
            views: Sequence[Callable[[np.ndarray], np.ndarray]] | None = None, batch_size: int | None = 256,
            preprocess: Callable[[np.ndarray], np.ndarray] | None = None) -> Tensor:
    """Average the model's class probabilities over fixed views of each input.

    Args:
        model: any callable ``model(Tensor (B, C, H, W)) -> logits Tensor (B, K)`` (put modules
            in eval mode first). Called under ``no_grad``.
        x: images ``(N, C, H, W)``: a Tensor, a float array, or ``uint8`` pixels (scaled to [0, 1]
            as the DataLoader does).
        views: the views (default :func:`default_views`); any callables on float arrays.
        batch_size: inputs per model call (``None``: all at once).
        preprocess: applied to every view before the model (e.g. the fitted ``Standardize``).

    Returns:
        ``(N, K)`` Tensor of averaged probabilities (rows sum to 1).
    """
    views = default_views() if views is None else list(views)
    if not views:
        raise ValueError("Expected at least one view. Received: views=[]")
    data = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
    data = to_float(data) if data.dtype.kind != "f" else data
    n = data.shape[0]
    step = n if batch_size is None else int(batch_size)
    if step < 1:
        raise ValueError(f"Expected batch_size >= 1. Received: batch_size={batch_size}")
    total: np.ndarray | None = None
    with no_grad():
        for start in range(0, n, step):
            chunk = data[start:start + step]
            acc = None
            for view in views:
                v = view(chunk)
                if preprocess is not None:
                    v = preprocess(v)
                out = model(Tensor(np.ascontiguousarray(v)))
                logits = np.asarray(out.numpy() if isinstance(out, Tensor) else out, dtype=np.float64)
                if logits.ndim != 2 or logits.shape[0] != chunk.shape[0]:
                    raise ValueError(f"Expected logits of shape ({chunk.shape[0]}, K) from the model. "
                                     f"Received: shape={logits.shape}")
                p = _softmax(logits)
                acc = p if acc is None else acc + p
            if total is None:
                total = np.empty((n, acc.shape[1]), dtype=np.float64)
            total[start:start + chunk.shape[0]] = acc / len(views)
    if total is None:
        total = np.zeros((0, 0))
    return Tensor(total.astype(data.dtype if data.dtype.kind == "f" else np.float32))
