"""Activation functions and the normalized exponentials (softmax, log-softmax).

Functions whose derivative is cheapest in terms of their output (sigmoid, tanh, softmax, ELU,
SELU) keep the output, not the input, for backward; ReLU and leaky ReLU keep only the mask
x > 0 (ReLU's packed to one bit per element by the compiled kernels).

The exact GELU needs the error function; :func:`erf_array` evaluates it with W. J. Cody's
rational Chebyshev approximations (Math. Comp. 1969; netlib ``specfun/erf``), accurate to
float64 rounding, using only array-module operations (so it runs on NumPy and CuPy).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np

from gradcraft.autograd.function import Function, Rebuild
from gradcraft.autograd.tensor import Tensor
from gradcraft.backend import get_array_module
from gradcraft.ops import accel, conv
from gradcraft.ops._util import writable_donation

__all__ = [
    "add_relu",
    "elu",
    "erf_array",
    "gelu",
    "leaky_relu",
    "log_softmax",
    "prelu",
    "relu",
    "selu",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "tanh",
]

#: SELU constants (Klambauer et al., 2017), as in PyTorch
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

_SQRT_2 = 1.4142135623730950488
_INV_SQRT_2PI = 0.39894228040143267794
_SQRT_2_OVER_PI = 0.79788456080286535588
_GELU_TANH_COEF = 0.044715

# W. J. Cody's coefficients: erf on |x| <= 0.46875 (A/B), erfc on 0.46875 < |x| <= 4 (C/D)
# and on |x| > 4 (P/Q).
# fmt: off
_CODY_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
           3.20937758913846947e03, 1.85777706184603153e-1)
_CODY_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
           2.84423683343917062e03)
_CODY_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
           2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
           2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_CODY_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
           1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
           3.43936767414372164e03, 1.23033935480374942e03)
_CODY_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
           1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_CODY_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
           6.05183413124413191e-2, 2.33520497626869185e-3)
# fmt: on
_INV_SQRT_PI = 0.56418958354775628695
_ERFC_UNDERFLOW = 26.543  # erfc(x) underflows to 0 in float64 beyond this


def _exp_neg_square(xp: Any, y: Any) -> Any:
    """exp(−y²) without the rounding error of forming y² directly (Cody's splitting)."""
    ysq = xp.trunc(y * 16.0) / 16.0
    return xp.exp(-ysq * ysq) * xp.exp(-(y - ysq) * (y + ysq))


def erf_array(x: Any) -> Any:
    """The error function erf(x) = (2/√π) ∫₀ˣ e^(−t²) dt, elementwise, on a raw array.

    W. J. Cody's near-minimax rational approximations (relative error below 1e-16 in
    float64): erf(x) = x·R₁(x²) for |x| ≤ 0.46875; otherwise 1 − erfc(|x|) with
    erfc(y) = e^(−y²)·R₂(y) for y ≤ 4 and e^(−y²)/y·(1/√π + y⁻²·R₃(y⁻²)) beyond. Computed
    in float64 and returned in the input's floating dtype.
    """
    xp = get_array_module(x)
    dtype = x.dtype if x.dtype.kind == "f" else xp.float64
    x64 = x.astype(xp.float64, copy=False)
    y = xp.abs(x64)
    out = xp.empty_like(x64)

    small = y <= 0.46875
    if small.any():
        xs = x64[small]
        ysq = xs * xs
        num = _CODY_A[4] * ysq
        den = ysq
        for i in range(3):
            num = (num + _CODY_A[i]) * ysq
            den = (den + _CODY_B[i]) * ysq
        out[small] = xs * (num + _CODY_A[3]) / (den + _CODY_B[3])

    mid = (y > 0.46875) & (y <= 4.0)
    if mid.any():
        ym = y[mid]
        num = _CODY_C[8] * ym
        den = ym
        for i in range(7):
            num = (num + _CODY_C[i]) * ym
            den = (den + _CODY_D[i]) * ym
        erfc = (num + _CODY_C[7]) / (den + _CODY_D[7]) * _exp_neg_square(xp, ym)
        out[mid] = xp.copysign((0.5 - erfc) + 0.5, x64[mid])

    big = y > 4.0
    if big.any():
        yb = xp.minimum(y[big], _ERFC_UNDERFLOW)
        inv = 1.0 / (yb * yb)
        num = _CODY_P[5] * inv
        den = inv
        for i in range(4):
            num = (num + _CODY_P[i]) * inv
            den = (den + _CODY_Q[i]) * inv
        erfc = (_INV_SQRT_PI - inv * (num + _CODY_P[4]) / (den + _CODY_Q[4])) / yb
        erfc = xp.where(y[big] >= _ERFC_UNDERFLOW, 0.0, erfc * _exp_neg_square(xp, yb))
        out[big] = xp.copysign((0.5 - erfc) + 0.5, x64[big])

    nan = xp.isnan(x64)
    if nan.any():
        out[nan] = xp.nan
    return out.astype(dtype, copy=False)


#: Arrays smaller than this stay on the NumPy path (a kernel call costs a few microseconds).
_FLAT_KERNEL_MIN = 1 << 14


class ReLU(Function):
    """y = max(0, x);  dx = g · [x > 0] (the subgradient at 0 is 0, as PyTorch).

    Keeps only the mask [x > 0] for backward, not y: a ReLU's output usually feeds a layer that
    keeps it anyway (a convolution's input) or that keeps something smaller (pooling keeps
    indices), so y costs nothing extra or is freed after the forward pass. With the compiled
    kernels the mask is packed to one bit per element (in ``x``'s memory order); otherwise it
    is a boolean array.
    """

    def forward(self, x: Any) -> Any:
        if x.size >= _FLAT_KERNEL_MIN and self._kernel_pays(x):
            y = self._compiled_forward("relu_forward_bits", x)
            if y is not None:
                if self.input_rebuilds is not None:
                    self._chain_rebuild(compiled=True)
                return y
        zero = _zero_of(x)
        if self.needs_input_grad[0]:
            self.save_for_backward(x > zero)
        if self.input_rebuilds is not None:
            self._chain_rebuild(compiled=False)
        return get_array_module(x).maximum(x, zero)

    def _chain_rebuild(self, compiled: bool) -> None:
        """Let the output be rebuilt from the input's rebuild, by the path forward took."""
        source = self.input_rebuilds[0]
        if source is not None:
            self.output_rebuild = partial(_relu_rebuilt, source, compiled)

    def _kernel_pays(self, x: Any) -> bool:
        """Whether the compiled kernel beats NumPy on ``x`` (of at least ``_FLAT_KERNEL_MIN``
        elements): always with a gradient to come (it packs the mask in the same pass); without
        one, only where it runs on the worker threads (``PARALLEL_MIN_BYTES``) and NumPy's single
        pass does not (evaluation of the benchmark residual network at batch 32: 0.86×; an MLP's
        smaller activations took 1.04–1.09× with the kernel)."""
        return any(self.needs_input_grad) or x.nbytes >= conv.PARALLEL_MIN_BYTES

    def _compiled_forward(self, kernel: str, *inputs: Any) -> Any:
        """The output of the kernel ``kernel(*inputs, y, bits)`` of
        :mod:`gradcraft.ops.kernels.activation`, keeping its packed mask for backward when an
        input needs a gradient; None (nothing kept) when the kernels are off or the inputs are
        of different dtypes or not dense in one shared memory layout."""
        x = inputs[0]
        if any(a.dtype != x.dtype for a in inputs):
            return None
        fast = accel.kernels("activation", *inputs)
        if fast is None:
            return None
        xp = get_array_module(x)
        y = xp.empty_like(x)
        flat = accel.flat_views(*inputs, y)
        if flat is None:
            return None
        bits = xp.empty((x.size + 7) // 8, dtype=xp.uint8)
        accel.map_bits(getattr(fast, kernel), *flat, bits)
        if any(self.needs_input_grad):
            self.layout = accel.layout(x)
            self.order = accel.flat_order(x)
            self.save_for_backward(bits)
        return y

    def backward(self, g: Any) -> Any:
        (mask,) = self.saved
        xp = get_array_module(g)
        if mask.dtype == xp.bool_:
            if writable_donation(self, g) and mask.shape == g.shape:
                return xp.multiply(g, mask, out=g)
            return g * mask
        fast = accel.kernels("activation", g) if accel.layout(g) == self.layout else None
        if fast is not None:
            # a new array even for a donated g: the bit loop is 1.5× slower in place (not vectorised)
            dx = xp.empty_like(g)
            flat = accel.flat_views(g, dx)
            if flat is not None:
                accel.map_bits(fast.relu_backward_bits, *flat, mask)
                return dx
        return g * self._unpacked(mask)

    def _unpacked(self, bits: Any) -> Any:
        """The packed mask as a boolean array of ``x``'s shape."""
        shape = self.layout[0]
        flat = get_array_module(bits).unpackbits(bits, count=math.prod(shape), bitorder="little")
        moved = flat.view(bool).reshape([shape[axis] for axis in self.order])
        return moved.transpose([self.order.index(axis) for axis in range(len(shape))])


def _relu_rebuilt(source: Rebuild, compiled: bool) -> Any:
    """ReLU's output again from its input's :class:`Rebuild`, through the same code as in
    forward (the compiled kernel or NumPy's maximum), in place on the rebuilt input."""
    x = source.make()
    xp = get_array_module(x)
    if compiled:
        fast = accel.kernels("activation", x)
        flat = accel.flat_views(x, x) if fast is not None else None
        if flat is not None:
            accel.map_bits(fast.relu_forward_bits, *flat, xp.empty((x.size + 7) // 8, dtype=xp.uint8))
            return x
    return xp.maximum(x, _zero_of(x), out=x)


_ZEROS: dict[Any, Any] = {}


def _zero_of(x: Any) -> Any:
    """0 for comparing with ``x``: a cached 0-d array of its dtype for a NumPy array (NumPy
    converts a Python 0 on every call, which costs a tiny ReLU a third of its time), else 0."""
    if type(x) is not np.ndarray:
        return 0
    zero = _ZEROS.get(x.dtype)
    if zero is None:
        zero = _ZEROS[x.dtype] = np.zeros((), dtype=x.dtype)
    return zero


class AddReLU(ReLU):
    """y = max(0, a + b) for a and b of one shape: a residual block's sum with its shortcut
    and the ReLU after it, as one op;  da = db = g · [a + b > 0].

    The sum is never stored: with the compiled kernels one pass reads a and b and writes y
    and the packed mask, where ``relu(a + b)`` writes the sum and reads it back, and keeps it
    alive until the ReLU is done. Backward is :class:`ReLU`'s, its result passed to both
    inputs (as :class:`~gradcraft.ops.elementwise.Add` passes its gradient).
    """

    def forward(self, a: Any, b: Any) -> Any:  # type: ignore[override]
        if a.shape != b.shape:
            raise ValueError(
                f"Expected a and b of the same shape. Received: {tuple(a.shape)} and {tuple(b.shape)}"
            )
        if a.size >= _FLAT_KERNEL_MIN and self._kernel_pays(a):
            y = self._compiled_forward("add_relu_forward_bits", a, b)
            if y is not None:
                return y
        total = a + b
        if any(self.needs_input_grad):
            self.save_for_backward(total > 0)
        return get_array_module(total).maximum(total, 0, out=total)

    def backward(self, g: Any) -> tuple[Any, Any]:  # type: ignore[override]
        grad = super().backward(g)
        return grad, grad


class Sigmoid(Function):
    """y = 1 / (1 + e⁻ˣ);  dx = g · y(1 − y)."""

    def forward(self, x: Any) -> Any:
        xp = get_array_module(x)
        # tanh form is stable for large |x| and needs no branch
        y = 0.5 * (xp.tanh(0.5 * x) + 1)
        self.save_for_backward(y)
        return y

    def backward(self, g: Any) -> Any:
        y = self.saved[0]
        return g * y * (1 - y)


class Tanh(Function):
    """y = tanh x;  dx = g · (1 − y²)."""

    def forward(self, x: Any) -> Any:
        y = get_array_module(x).tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, g: Any) -> Any:
        y = self.saved[0]
        return g * (1 - y * y)


class Softmax(Function):
    """yᵢ = exp(xᵢ − m) / Σⱼ exp(xⱼ − m), m = max x;  dx = y ⊙ (g − Σ g ⊙ y)."""

    def forward(self, x: Any, axis: int = -1) -> Any:
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        y = e / e.sum(axis=axis, keepdims=True)
        self.axis = axis
        self.save_for_backward(y)
        return y

    def backward(self, g: Any) -> Any:
        y = self.saved[0]
        return y * (g - (g * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """y = x − logsumexp(x);  dx = g − softmax(x) · Σ g."""

    def forward(self, x: Any, axis: int = -1) -> Any:
        xp = get_array_module(x)
        shifted = x - x.max(axis=axis, keepdims=True)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        self.axis = axis
        self.save_for_backward(y)
        return y

    def backward(self, g: Any) -> Any:
        xp = get_array_module(g)
        return g - xp.exp(self.saved[0]) * g.sum(axis=self.axis, keepdims=True)


class LeakyReLU(Function):
    """y = x if x > 0 else a·x;  dx = g · (1 if x > 0 else a)."""

    def forward(self, x: Any, negative_slope: float = 0.01) -> Any:
        xp = get_array_module(x)
        pos = x > 0
        self.slope = negative_slope
        self.save_for_backward(pos)
        return xp.where(pos, x, x * negative_slope)

    def backward(self, g: Any) -> Any:
        (pos,) = self.saved
        return get_array_module(g).where(pos, g, g * self.slope)


def _channel_view(weight: Any, ndim: int) -> Any:
    """PReLU's α as a shape broadcastable along the channel axis 1 of an ndim input."""
    if weight.size == 1 or ndim < 2:
        return weight.reshape(())
    return weight.reshape((1, -1) + (1,) * (ndim - 2))


class PReLU(Function):
    """y = x if x > 0 else α_c·x, α learnable, shared (one value) or one per channel (axis 1).

    dx = g · (1 if x > 0 else α_c);  dα_c = Σ_{x ≤ 0 in channel c} g · x.
    """

    def forward(self, x: Any, weight: Any) -> Any:
        xp = get_array_module(x)
        if weight.ndim != 1:
            raise ValueError(f"Expected a 1-D PReLU weight. Received: shape={weight.shape}")
        if weight.size != 1:
            channels = x.shape[1] if x.ndim >= 2 else 1
            if channels != weight.size:
                raise ValueError(
                    f"Expected input with {weight.size} channels on axis 1 (num_parameters={weight.size}). "
                    f"Received: shape={tuple(x.shape)}"
                )
        a = _channel_view(weight, x.ndim)
        pos = x > 0
        self.save_for_backward(x, pos, a)
        self.w_shape = weight.shape
        return xp.where(pos, x, a * x)

    def backward(self, g: Any) -> tuple[Any, Any]:
        x, pos, a = self.saved
        xp = get_array_module(g)
        need_x, need_w = self.needs_input_grad
        gx = xp.where(pos, g, a * g) if need_x else None
        gw = None
        if need_w:
            gneg = xp.where(pos, 0, g * x)
            if self.w_shape[0] == 1 or x.ndim < 2:
                gw = gneg.sum().reshape(self.w_shape)
            else:
                axes = (0, *range(2, x.ndim))
                gw = gneg.sum(axis=axes).reshape(self.w_shape)
        return gx, gw


class ELU(Function):
    """y = x if x > 0 else α(eˣ − 1), scaled by λ (``scale``; λ = 1 for ELU, SELU's constants
    for SELU);  dx = g·λ if x > 0 else g · (y + λα)."""

    def forward(self, x: Any, alpha: float = 1.0, scale: float = 1.0) -> Any:
        xp = get_array_module(x)
        pos = x > 0
        neg = (alpha * scale) * xp.expm1(xp.minimum(x, 0))
        y = xp.where(pos, x * scale if scale != 1.0 else x, neg)
        self.alpha, self.scale = alpha, scale
        self.save_for_backward(y, pos)
        return y

    def backward(self, g: Any) -> Any:
        y, pos = self.saved
        xp = get_array_module(g)
        return xp.where(pos, g * self.scale if self.scale != 1.0 else g, g * (y + self.alpha * self.scale))


class GELU(Function):
    """Gaussian error linear unit (Hendrycks & Gimpel, 2016).

    Exact: y = x·Φ(x) = ½x(1 + erf(x/√2)),  dx = g·(Φ(x) + x·φ(x)), φ the normal density.
    ``approximate="tanh"``: y = ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³),
    dx = g·(½(1 + tanh u) + ½x(1 − tanh² u)·√(2/π)(1 + 3·0.044715x²)).
    """

    def forward(self, x: Any, approximate: str = "none") -> Any:
        xp = get_array_module(x)
        self.approximate = approximate
        if approximate == "tanh":
            t = xp.tanh(_SQRT_2_OVER_PI * (x + _GELU_TANH_COEF * x * x * x))
            self.save_for_backward(x, t)
            return 0.5 * x * (1 + t)
        if approximate != "none":
            raise ValueError(f"Expected approximate 'none' or 'tanh'. Received: approximate={approximate!r}")
        cdf = 0.5 * (1 + erf_array(x / _SQRT_2))
        self.save_for_backward(x, cdf)
        return x * cdf

    def backward(self, g: Any) -> Any:
        x, aux = self.saved
        xp = get_array_module(g)
        if self.approximate == "tanh":
            t = aux
            du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_TANH_COEF * x * x)
            return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)
        pdf = _INV_SQRT_2PI * xp.exp(-0.5 * x * x)
        return g * (aux + x * pdf)


class SiLU(Function):
    """SiLU / swish: y = x·σ(βx);  dx = g·σ(βx)(1 + βx(1 − σ(βx))). β = 1 is PyTorch's SiLU."""

    def forward(self, x: Any, beta: float = 1.0) -> Any:
        xp = get_array_module(x)
        s = 0.5 * (xp.tanh((0.5 * beta) * x) + 1)
        self.beta = beta
        self.save_for_backward(x, s)
        return x * s

    def backward(self, g: Any) -> Any:
        x, s = self.saved
        return g * s * (1 + self.beta * x * (1 - s))


class Softplus(Function):
    """y = (1/β)·ln(1 + e^(βx)), and y = x where βx > threshold (PyTorch's linear cut-off);
    dx = g·σ(βx) (g where βx > threshold). Evaluated stably as max(z, 0) + ln(1 + e^(−|z|))."""

    def forward(self, x: Any, beta: float = 1.0, threshold: float = 20.0) -> Any:
        xp = get_array_module(x)
        z = x * beta if beta != 1.0 else x
        soft = xp.maximum(z, 0) + xp.log1p(xp.exp(-xp.abs(z)))
        if beta != 1.0:
            soft = soft / beta
        linear = z > threshold
        self.save_for_backward(z, linear)
        return xp.where(linear, x, soft)

    def backward(self, g: Any) -> Any:
        z, linear = self.saved
        xp = get_array_module(g)
        s = 0.5 * (xp.tanh(0.5 * z) + 1)
        return xp.where(linear, g, g * s)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return LeakyReLU.apply(x, negative_slope=negative_slope)


def prelu(x: Tensor, weight: Tensor) -> Tensor:
    return PReLU.apply(x, weight)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    return ELU.apply(x, alpha=alpha)


def selu(x: Tensor) -> Tensor:
    """λ·ELU(x, α) with α ≈ 1.6733, λ ≈ 1.0507 (Klambauer et al., 2017)."""
    return ELU.apply(x, alpha=SELU_ALPHA, scale=SELU_SCALE)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    return GELU.apply(x, approximate=approximate)


def silu(x: Tensor, beta: float = 1.0) -> Tensor:
    return SiLU.apply(x, beta=beta)


def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    return Softplus.apply(x, beta=beta, threshold=threshold)


def relu(x: Tensor) -> Tensor:
    return ReLU.apply(x)


def add_relu(a: Tensor, b: Tensor) -> Tensor:
    """``relu(a + b)`` in one pass, for a and b of the same shape (a residual block's output);
    see :class:`AddReLU`."""
    return AddReLU.apply(a, b)


def sigmoid(x: Tensor) -> Tensor:
    return Sigmoid.apply(x)


def tanh(x: Tensor) -> Tensor:
    return Tanh.apply(x)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return Softmax.apply(x, axis=axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return LogSoftmax.apply(x, axis=axis)
