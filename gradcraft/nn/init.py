"""Weight initialization schemes (PyTorch's ``torch.nn.init``, plus the lectures' own).

Every function fills a tensor *in place* (its ``.data``), returns it, and draws from
``generator`` (a ``numpy.random.Generator``) when given, else from
:func:`gradcraft.backend.generator` (seeded by :func:`gradcraft.manual_seed`).

Fans: for a weight of shape (out, in, *kernel), ``fan_in = in · ∏ kernel`` and
``fan_out = out · ∏ kernel`` (a conv weight (C_out, C_in, k, k) has fan_in = C_in·k·k).

=====================  ======================================================  ==========
scheme                 distribution                                            keeps var
=====================  ======================================================  ==========
``small_random_``      N(0, 0.01²) (cs231n's first try; activations collapse)  no
``xavier_uniform_``    U(±gain·√(6/(fan_in+fan_out)))  (Glorot & Bengio 2010)  tanh
``xavier_normal_``     N(0, gain²·2/(fan_in+fan_out))                          tanh
``lecun_normal_``      N(0, 1/fan_in) (LeCun 1998; SELU nets)                  linear
``lecun_uniform_``     U(±√(3/fan_in))                                         linear
``kaiming_normal_``    N(0, gain²/fan), gain = √2 for ReLU (He et al. 2015)    ReLU
``kaiming_uniform_``   U(±gain·√(3/fan))                                       ReLU
``orthogonal_``        a (semi-)orthogonal matrix × gain (Saxe et al. 2014)    deep linear
=====================  ======================================================  ==========

Layer defaults (as in PyTorch, so weights can be compared): ``Linear`` and conv layers use
``kaiming_uniform_(w, a=√5)``, i.e. U(±1/√fan_in), and bias U(±1/√fan_in); ``PReLU`` α = 0.25;
batch/layer norm γ = 1, β = 0.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradcraft import backend
from gradcraft.autograd.tensor import Tensor

__all__ = [
    "calculate_gain",
    "constant_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "lecun_normal_",
    "lecun_uniform_",
    "normal_",
    "ones_",
    "orthogonal_",
    "small_random_",
    "trunc_normal_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]

_GAINS = {
    "linear": 1.0,
    "identity": 1.0,
    "conv1d": 1.0,
    "conv2d": 1.0,
    "conv3d": 1.0,
    "conv_transpose1d": 1.0,
    "conv_transpose2d": 1.0,
    "conv_transpose3d": 1.0,
    "sigmoid": 1.0,
    "tanh": 5.0 / 3,
    "relu": math.sqrt(2.0),
    "selu": 3.0 / 4,
}


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended scale for weights followed by ``nonlinearity`` (PyTorch's values).

    linear / conv / sigmoid: 1; tanh: 5/3; relu: √2; leaky_relu: √(2 / (1 + a²)) with
    negative slope a = ``param`` (default 0.01); selu: 3/4.
    """
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(
                f"Expected a number for the leaky_relu negative slope. Received: param={param!r}"
            )
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity in _GAINS:
        return _GAINS[nonlinearity]
    raise ValueError(
        f"Expected nonlinearity in {sorted([*_GAINS, 'leaky_relu'])}. Received: nonlinearity={nonlinearity!r}"
    )


def _data(tensor: Any) -> Any:
    return tensor.data if isinstance(tensor, Tensor) else tensor


def _calculate_fan_in_and_fan_out(tensor: Any) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight (out, in, *kernel): (in·∏kernel, out·∏kernel).

    Raises:
        ValueError: for tensors with fewer than 2 dimensions.
    """
    shape = tuple(_data(tensor).shape) if not isinstance(tensor, tuple) else tensor
    if len(shape) < 2:
        raise ValueError(
            "Expected a weight with at least 2 dimensions to compute fan in and fan out. "
            f"Received: shape={shape}"
        )
    receptive = 1
    for n in shape[2:]:
        receptive *= n
    return shape[1] * receptive, shape[0] * receptive


def _fan(tensor: Any, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Expected mode 'fan_in' or 'fan_out'. Received: mode={mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _rng(generator: np.random.Generator | None) -> np.random.Generator:
    return backend.generator() if generator is None else generator


def _fill(tensor: Any, values: np.ndarray) -> Any:
    """Copy host ``values`` into the tensor's array (any array module), in place."""
    arr = _data(tensor)
    xp = backend.get_array_module(arr)
    arr[...] = xp.asarray(values, dtype=arr.dtype)
    return tensor


def uniform_(
    tensor: Any, a: float = 0.0, b: float = 1.0, generator: np.random.Generator | None = None
) -> Any:
    """Fill with U(a, b)."""
    if not a <= b:
        raise ValueError(f"Expected a <= b for uniform_. Received: a={a}, b={b}")
    return _fill(tensor, _rng(generator).uniform(a, b, size=_data(tensor).shape))


def normal_(
    tensor: Any, mean: float = 0.0, std: float = 1.0, generator: np.random.Generator | None = None
) -> Any:
    """Fill with N(mean, std²)."""
    if std < 0:
        raise ValueError(f"Expected std >= 0 for normal_. Received: std={std}")
    return _fill(tensor, _rng(generator).normal(mean, std, size=_data(tensor).shape))


def trunc_normal_(
    tensor: Any,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: np.random.Generator | None = None,
) -> Any:
    """Fill with N(mean, std²) restricted to [a, b] (rejected samples are redrawn)."""
    if not a < b:
        raise ValueError(f"Expected a < b for trunc_normal_. Received: a={a}, b={b}")
    rng = _rng(generator)
    shape = _data(tensor).shape
    out = rng.normal(mean, std, size=shape)
    bad = (out < a) | (out > b)
    for _ in range(1000):
        n = int(bad.sum())
        if not n:
            break
        out[bad] = rng.normal(mean, std, size=n)
        bad = (out < a) | (out > b)
    out = np.clip(out, a, b)
    return _fill(tensor, out)


def constant_(tensor: Any, val: float) -> Any:
    """Fill with the constant ``val``."""
    _data(tensor)[...] = val
    return tensor


def zeros_(tensor: Any) -> Any:
    """Fill with 0 (the usual bias init)."""
    return constant_(tensor, 0.0)


def ones_(tensor: Any) -> Any:
    """Fill with 1 (batch norm's γ)."""
    return constant_(tensor, 1.0)


def small_random_(tensor: Any, std: float = 0.01, generator: np.random.Generator | None = None) -> Any:
    """Fill with N(0, std²), std = 0.01 by default: ``W = 0.01 * np.random.randn(D, H)`` from the
    lectures. Fine for small nets; in deep nets activations shrink towards zero layer by layer."""
    return normal_(tensor, 0.0, std, generator)


def xavier_uniform_(tensor: Any, gain: float = 1.0, generator: np.random.Generator | None = None) -> Any:
    """Glorot & Bengio (2010): U(±a), a = gain · √(6 / (fan_in + fan_out)).

    Var = gain² · 2 / (fan_in + fan_out); with gain = 5/3 it keeps tanh activations' scale.
    """
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor: Any, gain: float = 1.0, generator: np.random.Generator | None = None) -> Any:
    """Glorot & Bengio (2010): N(0, σ²), σ = gain · √(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def lecun_normal_(tensor: Any, generator: np.random.Generator | None = None) -> Any:
    """LeCun (1998): N(0, 1/fan_in) — the init SELU's self-normalization assumes."""
    fan_in, _ = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, 1.0 / math.sqrt(fan_in), generator)


def lecun_uniform_(tensor: Any, generator: np.random.Generator | None = None) -> Any:
    """LeCun (1998): U(±√(3/fan_in)), variance 1/fan_in."""
    fan_in, _ = _calculate_fan_in_and_fan_out(tensor)
    bound = math.sqrt(3.0 / fan_in)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_uniform_(
    tensor: Any,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: np.random.Generator | None = None,
) -> Any:
    """He et al. (2015): U(±bound), bound = gain · √(3 / fan), gain = calculate_gain(nonlinearity, a).

    With the defaults (a = 0) gain = √2, the ReLU gain. ``mode='fan_in'`` keeps the forward
    activations' variance, ``'fan_out'`` the backward gradients'. PyTorch's Linear/conv
    default is ``a=√5``, which gives U(±1/√fan_in).
    """
    fan = _fan(tensor, mode)
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(
    tensor: Any,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: np.random.Generator | None = None,
) -> Any:
    """He et al. (2015): N(0, σ²), σ = gain / √fan (σ = √(2/fan_in) for ReLU)."""
    fan = _fan(tensor, mode)
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan), generator)


def orthogonal_(tensor: Any, gain: float = 1.0, generator: np.random.Generator | None = None) -> Any:
    """Saxe et al. (2014): a (semi-)orthogonal matrix times ``gain``.

    The weight is viewed as (rows, cols) = (shape[0], ∏ shape[1:]); Q from the QR
    decomposition of a Gaussian matrix, with signs fixed by diag(R) so Q is uniformly
    (Haar) distributed. Rows are orthonormal if rows ≤ cols, else columns are.
    """
    arr = _data(tensor)
    if arr.ndim < 2:
        raise ValueError(
            f"Expected a tensor with at least 2 dimensions for orthogonal_. Received: shape={arr.shape}"
        )
    rows = arr.shape[0]
    cols = arr.size // rows
    flat = _rng(generator).standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _fill(tensor, (gain * q).reshape(arr.shape))
