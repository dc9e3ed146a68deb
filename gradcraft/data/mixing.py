"""Batch mixing: Mixup and CutMix, which produce soft targets for the cross-entropy loss.

Both pair each sample ``i`` with sample ``π(i)`` of a random permutation ``π`` of the batch
and mix inputs and labels with the same weight, so the target is a probability vector:

* **Mixup** (Zhang et al. 2018): ``λ ~ Beta(α, α)``,
  ``x̃ = λ x_i + (1 − λ) x_π(i)``, ``ỹ = λ y_i + (1 − λ) y_π(i)``.
* **CutMix** (Yun et al. 2019): ``λ ~ Beta(α, α)``; a box of area ``(1 − λ)·H·W`` centred at a
  uniform position (clipped to the image) is pasted from ``x_π(i)``; the label weight is the
  area actually kept, ``λ' = 1 − box area / (H·W)``.

Labels ``y`` may be integer classes ``(B,)`` (one-hot encoded with ``num_classes``) or already
soft ``(B, K)``. The result ``ỹ`` has shape ``(B, K)`` and rows summing to 1; the loss then
computes ``−Σ_k ỹ_k log softmax(z)_k``. With ``per_sample=False`` (default, as in both papers'
code) one ``λ`` serves the whole batch; ``per_sample=True`` draws one per sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcraft import backend

__all__ = ["CutMix", "Mixup", "one_hot"]


def one_hot(y: Any, num_classes: int, dtype: Any = None) -> np.ndarray:
    """``(B,)`` integer labels → ``(B, K)`` one-hot rows; ``(B, K)`` soft labels pass through."""
    y = np.asarray(y)
    dt = backend.default_dtype() if dtype is None else np.dtype(dtype)
    if y.ndim == 2:
        if y.shape[1] != num_classes:
            raise ValueError(f"Expected soft labels with {num_classes} columns. Received: shape={y.shape}")
        return y.astype(dt, copy=False)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(f"Expected integer labels (B,) or soft labels (B, K). Received: shape={y.shape}, "
                         f"dtype={y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"Expected labels in [0, {num_classes}). Received: [{y.min()}, {y.max()}]")
    out = np.zeros((y.shape[0], num_classes), dtype=dt)
    out[np.arange(y.shape[0]), y] = 1
    return out


class _Mixer:
    def __init__(self, alpha: float, num_classes: int, p: float, per_sample: bool,
                 generator: np.random.Generator | None) -> None:
        if not alpha > 0:
            raise ValueError(f"Expected alpha > 0. Received: alpha={alpha!r}")
        if int(num_classes) < 1:
            raise ValueError(f"Expected num_classes >= 1. Received: num_classes={num_classes!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Expected a probability in [0, 1]. Received: p={p!r}")
        self.alpha = float(alpha)
        self.num_classes = int(num_classes)
        self.p = float(p)
        self.per_sample = bool(per_sample)
        self.generator = generator

    def __call__(self, x: Any, y: Any,
                 generator: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mix a batch; returns ``(x̃, ỹ)`` with ``ỹ`` of shape ``(B, K)``."""
        gen = generator if generator is not None else (
            self.generator if self.generator is not None else backend.generator())
        x = np.asarray(x)
        if y is None:
            raise ValueError("Expected labels to mix. Received: y=None (an unlabelled dataset)")
        soft = one_hot(y, self.num_classes, x.dtype if x.dtype.kind == "f" else None)
        n = x.shape[0]
        if n == 0 or gen.random() >= self.p:
            return x, soft
        perm = gen.permutation(n)
        lam = gen.beta(self.alpha, self.alpha, size=n if self.per_sample else 1)
        lam = np.broadcast_to(lam, (n,)).astype(np.float64)
        x_mixed, lam = self._mix(x, perm, lam, gen)
        lam_col = lam.astype(soft.dtype)[:, None]
        return x_mixed, lam_col * soft + (1 - lam_col) * soft[perm]

    def _mix(self, x: np.ndarray, perm: np.ndarray, lam: np.ndarray,
             gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(alpha={self.alpha}, num_classes={self.num_classes}, p={self.p}, "
                f"per_sample={self.per_sample})")


class Mixup(_Mixer):
    """Mixup: convex combinations of pairs of inputs and of their labels.

    Args:
        alpha: the Beta(α, α) parameter (0.2–0.4 for ImageNet, 1.0 for CIFAR in the paper).
        num_classes: ``K``, to one-hot encode integer labels.
        p: probability of mixing a batch at all (otherwise labels are just one-hot).
        per_sample: one ``λ`` per sample instead of per batch.

    Use as ``DataLoader(..., mixing=Mixup(0.2, 10))``.
    """

    def __init__(self, alpha: float = 0.2, num_classes: int = 10, p: float = 1.0, per_sample: bool = False,
                 generator: np.random.Generator | None = None) -> None:
        super().__init__(alpha, num_classes, p, per_sample, generator)

    def _mix(self, x: np.ndarray, perm: np.ndarray, lam: np.ndarray,
             gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        w = lam.astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1)) if x.dtype.kind == "f" else lam.reshape(
            (-1,) + (1,) * (x.ndim - 1))
        return w * x + (1 - w) * x[perm], lam


class CutMix(_Mixer):
    """CutMix: paste a box from a partner image; labels mixed by the pasted area.

    Inputs must be images ``(B, C, H, W)``. Arguments as :class:`Mixup` (the paper uses α = 1).
    """

    def __init__(self, alpha: float = 1.0, num_classes: int = 10, p: float = 1.0, per_sample: bool = False,
                 generator: np.random.Generator | None = None) -> None:
        super().__init__(alpha, num_classes, p, per_sample, generator)

    def _mix(self, x: np.ndarray, perm: np.ndarray, lam: np.ndarray,
             gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if x.ndim != 4:
            raise ValueError(f"Expected images (B, C, H, W) for CutMix. Received: shape={x.shape}")
        n, _, h, w = x.shape
        k = n if self.per_sample else 1
        cut = np.sqrt(1.0 - lam[:k])
        bh, bw = np.round(h * cut).astype(np.int64), np.round(w * cut).astype(np.int64)
        cy, cx = gen.integers(0, h, size=k), gen.integers(0, w, size=k)
        top, bottom = np.clip(cy - bh // 2, 0, h), np.clip(cy + (bh - bh // 2), 0, h)
        left, right = np.clip(cx - bw // 2, 0, w), np.clip(cx + (bw - bw // 2), 0, w)
        rows = np.arange(h)[None, :, None]
        cols = np.arange(w)[None, None, :]
        mask = ((rows >= top[:, None, None]) & (rows < bottom[:, None, None])
                & (cols >= left[:, None, None]) & (cols < right[:, None, None]))[:, None]
        kept = 1.0 - ((bottom - top) * (right - left)) / float(h * w)
        return np.where(mask, x[perm], x), np.broadcast_to(kept, (n,)).astype(np.float64)
