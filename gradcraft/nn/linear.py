"""Fully connected layers: ``Linear``, ``Maxout`` and ``DropConnect``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from gradcraft import backend
from gradcraft.autograd.tensor import Tensor
from gradcraft.nn import init as _init
from gradcraft.nn.module import Module, Parameter
from gradcraft.ops.linear import linear
from gradcraft.ops.reduce import max as _max

__all__ = ["DropConnect", "Linear", "Maxout"]

_NAMED_INITS: dict[str, Callable[..., Any]] = {
    "xavier_uniform": _init.xavier_uniform_,
    "xavier_normal": _init.xavier_normal_,
    "glorot_uniform": _init.xavier_uniform_,
    "glorot_normal": _init.xavier_normal_,
    "kaiming_uniform": lambda w, generator=None: _init.kaiming_uniform_(
        w, nonlinearity="relu", generator=generator
    ),
    "kaiming_normal": lambda w, generator=None: _init.kaiming_normal_(
        w, nonlinearity="relu", generator=generator
    ),
    "he_uniform": lambda w, generator=None: _init.kaiming_uniform_(
        w, nonlinearity="relu", generator=generator
    ),
    "he_normal": lambda w, generator=None: _init.kaiming_normal_(w, nonlinearity="relu", generator=generator),
    "lecun_normal": _init.lecun_normal_,
    "lecun_uniform": _init.lecun_uniform_,
    "orthogonal": _init.orthogonal_,
    "small_random": _init.small_random_,
}

InitSpec = str | Callable[..., Any] | None


def _check_features(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"Expected a positive integer for {name}. Received: {name}={value!r}")
    return int(value)


def _dtype(dtype: Any) -> np.dtype:
    return backend.default_dtype() if dtype is None else np.dtype(dtype)


def init_affine(
    weight: Tensor, bias: Tensor | None, init: InitSpec, generator: np.random.Generator | None
) -> None:
    """Initialize an affine layer's ``weight`` (out, in, …) and ``bias`` in place.

    ``init=None`` / ``"default"``: PyTorch's default, ``kaiming_uniform_(W, a=√5)`` =
    U(±1/√fan_in) for W and U(±1/√fan_in) for b. A scheme name (``"xavier_uniform"``,
    ``"kaiming_normal"`` (ReLU gain), ``"lecun_normal"``, ``"orthogonal"``,
    ``"small_random"``, …) or a callable ``init(weight, generator=...)`` initializes W, and b
    is then set to 0.
    """
    fan_in, _ = _init._calculate_fan_in_and_fan_out(weight)
    if init is None or init == "default":
        _init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
        if bias is not None:
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            _init.uniform_(bias, -bound, bound, generator)
        return
    if isinstance(init, str):
        if init not in _NAMED_INITS:
            raise ValueError(
                f"Expected init in {['default', *sorted(_NAMED_INITS)]} or a callable. "
                f"Received: init={init!r}"
            )
        _NAMED_INITS[init](weight, generator=generator)
    elif callable(init):
        init(weight, generator=generator)
    else:
        raise TypeError(f"Expected init as a name or a callable. Received: init={init!r}")
    if bias is not None:
        _init.zeros_(bias)


class Linear(Module):
    """Fully connected layer: y = x Wᵀ + b.

    Shapes: x (N, *, in_features) → y (N, *, out_features); ``weight`` (out_features,
    in_features), ``bias`` (out_features,), as PyTorch (so state dicts are interchangeable).

    Args:
        in_features, out_features: sizes of each input and output sample.
        bias: learn an additive bias.
        init: weight initialization. Default (``None``) is PyTorch's:
            ``kaiming_uniform_(W, a=√5)``, i.e. W ~ U(±1/√in_features), and
            b ~ U(±1/√in_features). A name (``"xavier_uniform"``, ``"kaiming_normal"``,
            ``"lecun_normal"``, ``"orthogonal"``, ``"small_random"``, …) or a callable
            ``f(weight, generator=...)`` initializes W instead, with b = 0.
        generator: ``numpy.random.Generator`` for the init (default: the library's).
        dtype: parameter dtype (default :func:`gradcraft.backend.default_dtype`).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init: InitSpec = None,
        generator: np.random.Generator | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.in_features = _check_features("in_features", in_features)
        self.out_features = _check_features("out_features", out_features)
        dt = _dtype(dtype)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype=dt))
        if bias:
            self.bias = Parameter(np.empty((self.out_features,), dtype=dt))
        else:
            self.register_parameter("bias", None)
        self.init = init
        self.reset_parameters(generator)

    def reset_parameters(self, generator: np.random.Generator | None = None) -> None:
        """Re-draw the weights (and bias) with this layer's ``init`` scheme."""
        init_affine(self.weight, self.bias, self.init, generator)

    def _check_input(self, x: Tensor) -> None:
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Expected input with last dimension {self.in_features}. Received: shape={tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )


class Maxout(Module):
    """Maxout unit (Goodfellow et al., 2013): the max over ``pieces`` affine maps.

    yⱼ = max_{k < pieces} (x Wⱼₖᵀ + bⱼₖ), x (N, *, in_features) → y (N, *, out_features).

    Parameters are stored as one affine map with ``pieces`` consecutive rows per output:
    ``weight`` (out_features · pieces, in_features), ``bias`` (out_features · pieces,), row
    j·pieces + k being piece k of unit j. Init as :class:`Linear`'s (default: PyTorch's
    U(±1/√in_features)). The gradient flows only to the winning piece (ties, which have
    probability zero, share it).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        pieces: int = 2,
        bias: bool = True,
        init: InitSpec = None,
        generator: np.random.Generator | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.in_features = _check_features("in_features", in_features)
        self.out_features = _check_features("out_features", out_features)
        self.pieces = _check_features("pieces", pieces)
        dt = _dtype(dtype)
        rows = self.out_features * self.pieces
        self.weight = Parameter(np.empty((rows, self.in_features), dtype=dt))
        if bias:
            self.bias = Parameter(np.empty((rows,), dtype=dt))
        else:
            self.register_parameter("bias", None)
        self.init = init
        self.reset_parameters(generator)

    def reset_parameters(self, generator: np.random.Generator | None = None) -> None:
        """Re-draw the weights (and bias) with this layer's ``init`` scheme."""
        init_affine(self.weight, self.bias, self.init, generator)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Expected input with last dimension {self.in_features}. Received: shape={tuple(x.shape)}"
            )
        z = linear(x, self.weight, self.bias)
        z = z.reshape(*x.shape[:-1], self.out_features, self.pieces)
        return _max(z, axis=-1)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, pieces={self.pieces}, "
            f"bias={self.bias is not None}"
        )


class DropConnect(Linear):
    """A Linear layer whose *weights* are randomly dropped in training (Wan et al., 2013).

    Training: y = x (M ⊙ W)ᵀ / (1 − p) + b with M ~ Bernoulli(1 − p) drawn afresh for every
    forward pass (one mask shared by the minibatch; the paper draws one per example).
    Evaluation: all connections are used, y = x Wᵀ + b — the expected weights
    E[M ⊙ W / (1 − p)] = W (the inverted form, like inverted dropout). With
    ``mode="vanilla"`` training uses x (M ⊙ W)ᵀ + b unscaled and evaluation uses the
    expected weights (1 − p) W. (The paper's test-time rule instead moment-matches a
    Gaussian over the pre-activation; the mean-weight rule is its common simplification.)
    The bias is never dropped.

    Args:
        in_features, out_features, bias, init, dtype: as :class:`Linear`.
        p: probability of dropping each weight, in [0, 1).
        mode: ``"inverted"`` (default) or ``"vanilla"``.
        generator: ``numpy.random.Generator`` for init and masks (default: the library's).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        p: float = 0.5,
        bias: bool = True,
        mode: str = "inverted",
        init: InitSpec = None,
        generator: np.random.Generator | None = None,
        dtype: Any = None,
    ) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"Expected a drop probability p in [0, 1). Received: p={p!r}")
        if mode not in ("inverted", "vanilla"):
            raise ValueError(f"Expected mode 'inverted' or 'vanilla'. Received: mode={mode!r}")
        super().__init__(in_features, out_features, bias, init, generator, dtype)
        self.p = float(p)
        self.mode = mode
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        w = self.weight
        keep = 1.0 - self.p
        if self.training and self.p > 0:
            rng = backend.generator() if self.generator is None else self.generator
            xp = backend.get_array_module(w.data)
            mask = xp.asarray(rng.random(w.shape) < keep).astype(w.dtype)
            if self.mode == "inverted":
                mask *= 1.0 / keep
            w = w * mask
        elif not self.training and self.mode == "vanilla":
            w = w * keep
        return linear(x, w, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, p={self.p}, "
            f"mode={self.mode!r}, bias={self.bias is not None}"
        )
