"""Dropout and the other random multiplicative / additive noise layers.

Every variant multiplies x by a random mask (and some add a shift), so one Function,
:class:`MaskedScale` (y = x ⊙ mask · scale + shift, dx = g ⊙ mask · scale), carries them
all; the functions below only draw the masks. Masks come from an explicit
``numpy.random.Generator`` (``generator=``) or the library's seeded one
(:func:`gradcraft.backend.generator`), and are drawn on the host, then moved to the input's
array module.

Expected activations, with keep probability q = 1 − p:

==========================  ===============================  =====================
function                    training                         evaluation
==========================  ===============================  =====================
dropout (inverted)          x ⊙ m / q,  m ~ Bernoulli(q)     x
dropout (``"vanilla"``)     x ⊙ m                            q · x
dropout2d                   whole channels, as dropout       as dropout
alpha_dropout               a(x ⊙ m + α′(1 − m)) + b         x
gaussian_dropout            x ⊙ ε,  ε ~ N(1, p/q)            x
gaussian_noise              x + σ n,  n ~ N(0, 1)            x
stochastic_depth            x ⊙ m / q, one m per row/batch   x  (``"original"``: q·x)
==========================  ===============================  =====================

so E[training output] = evaluation output for each (alpha dropout keeps mean 0 and
variance 1 of SELU activations instead).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradcraft import backend
from gradcraft.autograd.function import Function
from gradcraft.autograd.tensor import Tensor
from gradcraft.ops.activation import SELU_ALPHA, SELU_SCALE
from gradcraft.ops.elementwise import add, mul

__all__ = [
    "alpha_dropout",
    "dropout",
    "dropout2d",
    "gaussian_dropout",
    "gaussian_noise",
    "stochastic_depth",
]


class MaskedScale(Function):
    """y = x ⊙ mask · scale (+ shift);  dx = g ⊙ mask · scale.

    ``mask`` (bool or floating, broadcastable to x) and ``shift`` are constants passed as
    keyword parameters, so they are never differentiated.
    """

    def forward(self, x: Any, mask: Any = None, scale: float = 1.0, shift: Any = None) -> Any:
        y = x * mask
        if y.dtype != x.dtype:
            y = y.astype(x.dtype)
        if scale != 1.0:
            y *= scale
        if shift is not None:
            y += shift
        self.mask = mask
        self.scale = scale
        return y

    def backward(self, g: Any) -> Any:
        gx = g * self.mask
        if gx.dtype != g.dtype:
            gx = gx.astype(g.dtype)
        if self.scale != 1.0:
            gx *= self.scale
        return gx


def _check_p(p: Any, name: str = "p", upper_inclusive: bool = True) -> float:
    ok = isinstance(p, (int, float, np.floating)) and not isinstance(p, bool)
    if not ok or not (0 <= p <= 1 if upper_inclusive else 0 <= p < 1):
        bound = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise ValueError(f"Expected a probability {name} in {bound}. Received: {name}={p!r}")
    return float(p)


def _rng(generator: np.random.Generator | None) -> np.random.Generator:
    return backend.generator() if generator is None else generator


def _uniform(x: Any, shape: tuple[int, ...], generator: np.random.Generator | None) -> Any:
    """U[0, 1) samples of ``shape`` in x's precision, on x's array module."""
    dt = np.float32 if x.dtype != np.float64 else np.float64
    u = _rng(generator).random(shape, dtype=dt)
    xp = backend.get_array_module(x)
    return u if xp is np else xp.asarray(u)


def _normal(x: Any, shape: tuple[int, ...], generator: np.random.Generator | None) -> Any:
    dt = np.float32 if x.dtype != np.float64 else np.float64
    n = _rng(generator).standard_normal(shape, dtype=dt)
    xp = backend.get_array_module(x)
    return n if xp is np else xp.asarray(n)


def _keep_mask(x: Tensor, p: float, shape: tuple[int, ...], generator: np.random.Generator | None) -> Any:
    """Bernoulli(1 − p) booleans of ``shape`` (True = keep)."""
    return _uniform(x.data, shape, generator) >= p


def dropout(
    x: Tensor,
    p: float = 0.5,
    training: bool = True,
    generator: np.random.Generator | None = None,
    mode: str = "inverted",
) -> Tensor:
    """Dropout (Srivastava et al., 2014): zero each element with probability ``p``.

    ``mode="inverted"`` (PyTorch's; the default): training y = x ⊙ m/(1 − p), evaluation
    y = x. ``mode="vanilla"`` (the lectures' first form): training y = x ⊙ m, evaluation
    y = (1 − p)·x. Either way E[y_train] = y_eval. m ~ Bernoulli(1 − p) elementwise.
    """
    p = _check_p(p)
    if mode not in ("inverted", "vanilla"):
        raise ValueError(f"Expected mode 'inverted' or 'vanilla'. Received: mode={mode!r}")
    if not training:
        return x if mode == "inverted" or p == 0 else mul(x, 1.0 - p)
    if p == 0:
        return x
    keep = _keep_mask(x, p, x.shape, generator)
    scale = (1.0 / (1.0 - p) if p < 1 else 0.0) if mode == "inverted" else 1.0
    return MaskedScale.apply(x, mask=keep, scale=scale)


def dropout2d(
    x: Tensor,
    p: float = 0.5,
    training: bool = True,
    generator: np.random.Generator | None = None,
    mode: str = "inverted",
) -> Tensor:
    """Spatial dropout (Tompson et al., 2015): zero whole channels of x (N, C, *) with
    probability ``p`` — one Bernoulli draw per (sample, channel) — since neighbouring pixels
    of a feature map are strongly correlated. Scaling as :func:`dropout`."""
    p = _check_p(p)
    if x.ndim < 2:
        raise ValueError(f"Expected input (N, C, *) for channel dropout. Received: shape={tuple(x.shape)}")
    if mode not in ("inverted", "vanilla"):
        raise ValueError(f"Expected mode 'inverted' or 'vanilla'. Received: mode={mode!r}")
    if not training:
        return x if mode == "inverted" or p == 0 else mul(x, 1.0 - p)
    if p == 0:
        return x
    keep = _keep_mask(x, p, x.shape[:2] + (1,) * (x.ndim - 2), generator)
    scale = (1.0 / (1.0 - p) if p < 1 else 0.0) if mode == "inverted" else 1.0
    return MaskedScale.apply(x, mask=keep, scale=scale)


def alpha_dropout(
    x: Tensor, p: float = 0.5, training: bool = True, generator: np.random.Generator | None = None
) -> Tensor:
    """Alpha dropout (Klambauer et al., 2017) for SELU networks.

    Dropped units are set to SELU's negative saturation α′ = −λα, then an affine map keeps
    zero mean and unit variance: y = a(x ⊙ m + α′(1 − m)) + b with q = 1 − p,
    a = (q + α′² q p)^(−1/2), b = −a α′ p. Identity in evaluation.
    """
    p = _check_p(p)
    if not training or p == 0:
        return x
    if p == 1:
        return mul(x, 0.0)
    q = 1.0 - p
    alpha_p = -SELU_ALPHA * SELU_SCALE
    a = 1.0 / math.sqrt(q + alpha_p * alpha_p * q * p)
    b = -a * alpha_p * p
    keep = _keep_mask(x, p, x.shape, generator)
    xp = backend.get_array_module(x.data)
    shift = xp.where(keep, b, a * alpha_p + b).astype(x.dtype)
    return MaskedScale.apply(x, mask=keep, scale=a, shift=shift)


def gaussian_dropout(
    x: Tensor, p: float = 0.5, training: bool = True, generator: np.random.Generator | None = None
) -> Tensor:
    """Gaussian (multiplicative) dropout (Srivastava et al., 2014, §10): y = x ⊙ ε with
    ε ~ N(1, p/(1 − p)), the same mean and variance as inverted Bernoulli dropout's mask.
    Identity in evaluation."""
    p = _check_p(p, upper_inclusive=False)
    if not training or p == 0:
        return x
    std = math.sqrt(p / (1.0 - p))
    eps = _normal(x.data, x.shape, generator)
    eps *= std
    eps += 1.0
    return MaskedScale.apply(x, mask=eps)


def gaussian_noise(
    x: Tensor, std: float = 0.1, training: bool = True, generator: np.random.Generator | None = None
) -> Tensor:
    """Additive Gaussian noise (a regularizer, as Keras's ``GaussianNoise``): y = x + σn,
    n ~ N(0, 1), in training; identity in evaluation. dx = g."""
    if isinstance(std, bool) or not isinstance(std, (int, float)) or std < 0:
        raise ValueError(f"Expected a standard deviation std >= 0. Received: std={std!r}")
    if not training or std == 0:
        return x
    noise = _normal(x.data, x.shape, generator)
    noise *= std
    return add(x, noise.astype(x.dtype, copy=False))


def stochastic_depth(
    x: Tensor,
    p: float,
    mode: str = "row",
    training: bool = True,
    generator: np.random.Generator | None = None,
    scaling: str = "inverted",
) -> Tensor:
    """Stochastic depth (Huang et al., 2016) for the output of a residual branch.

    The branch is dropped (multiplied by 0) with probability ``p``: per sample with
    ``mode="row"`` (torchvision's), or for the whole batch with ``mode="batch"``. With
    ``scaling="inverted"`` (torchvision's) kept branches are scaled by 1/(1 − p) in training
    and evaluation is the identity; with ``scaling="original"`` (the paper's) training leaves
    kept branches unscaled and evaluation multiplies the branch by its survival
    probability 1 − p. Use as ``out = x + stochastic_depth(branch(x), p)``.
    """
    p = _check_p(p)
    if mode not in ("row", "batch"):
        raise ValueError(f"Expected mode 'row' or 'batch'. Received: mode={mode!r}")
    if scaling not in ("inverted", "original"):
        raise ValueError(f"Expected scaling 'inverted' or 'original'. Received: scaling={scaling!r}")
    survival = 1.0 - p
    if not training:
        return x if scaling == "inverted" or p == 0 else mul(x, survival)
    if p == 0:
        return x
    shape = (x.shape[0],) + (1,) * (x.ndim - 1) if mode == "row" else (1,) * x.ndim
    keep = _keep_mask(x, p, shape, generator)
    scale = (1.0 / survival if survival > 0 else 0.0) if scaling == "inverted" else 1.0
    return MaskedScale.apply(x, mask=keep, scale=scale)
