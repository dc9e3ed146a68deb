"""Loss functions as fused Functions with hand-derived gradients (PyTorch semantics).

Every function takes ``reduction`` = ``"mean"`` (default), ``"sum"`` or ``"none"`` (one loss
per sample, or per element for the regression losses) and differentiates with respect to
its input (and, for the regression losses, the target too).

The softmax cross-entropy is one Function: a stable log-softmax (shift by the row maximum)
whose backward is (softmax − target)·scale (cs231n ``softmax_loss``), with class weights,
``ignore_index``, label smoothing and probability targets handled exactly as PyTorch does:

* class indices: ℓₙ = (1 − ε)·w_{yₙ}·(−log pₙ,yₙ) + (ε/C)·Σ_c w_c·(−log pₙ,c), ignored
  samples give 0; ``"mean"`` divides Σ ℓₙ by Σ_{n not ignored} w_{yₙ} (so with weights the
  mean is a weighted mean; with no weights, by the number of non-ignored samples);
* probabilities tₙ (N, C): ℓₙ = −Σ_c w_c·t̃ₙ,c·log pₙ,c with t̃ = (1 − ε)t + ε/C, and
  ``"mean"`` divides by N (weights do not normalize).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcraft.autograd.function import Function
from gradcraft.autograd.tensor import Tensor
from gradcraft.backend import get_array_module
from gradcraft.ops import accel

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "huber_loss",
    "l1_loss",
    "mse_loss",
    "multi_margin_loss",
    "nll_loss",
    "smooth_l1_loss",
]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"Expected reduction in {_REDUCTIONS}. Received: reduction={reduction!r}")


def _data(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def _to_rows(x: Any) -> tuple[Any, tuple[int, ...]]:
    """(N, C, d1, …) → (N·d1·…, C) with the class axis last; returns the (N, d1, …) shape."""
    xp = get_array_module(x)
    if x.ndim == 2:
        return x, (x.shape[0],)
    rest = (x.shape[0], *x.shape[2:])
    return xp.ascontiguousarray(xp.moveaxis(x, 1, -1)).reshape(-1, x.shape[1]), rest


def _from_rows(g2: Any, shape: tuple[int, ...]) -> Any:
    """Inverse of :func:`_to_rows` for a gradient."""
    xp = get_array_module(g2)
    if len(shape) == 2:
        return g2
    moved = g2.reshape((shape[0], *shape[2:], shape[1]))
    return xp.moveaxis(moved, -1, 1)


def _check_labels(xp: Any, labels: Any, n_classes: int, ignore_index: int) -> Any:
    """Validity mask (not ignored); raises for labels outside [0, C)."""
    valid = labels != ignore_index
    bad = valid & ((labels < 0) | (labels >= n_classes))
    if bad.any():
        first = int(labels[bad].reshape(-1)[0])
        raise ValueError(
            f"Expected class indices in [0, {n_classes}) or ignore_index={ignore_index}. Received: target "
            f"containing {first}"
        )
    return valid


def _reduce_grad(g: Any, reduction: str, denom: Any) -> Any:
    """Per-sample gradient factor from the incoming gradient of the reduced loss."""
    if reduction == "none":
        return g.reshape(-1)
    return g / denom if reduction == "mean" else g


class CrossEntropy(Function):
    """Fused log-softmax + negative log-likelihood over axis 1 of logits (N, C) or (N, C, d…).

    Forward: z = x − max x, lse = log Σ eᶻ, log p = z − lse. Only one array of the logits'
    size is allocated: eᶻ is computed in place and normalized into the softmax p kept for
    backward. Backward: dx = scaleₙ·(aₙ p − tₙ) where tₙ is the (weighted, smoothed) target
    distribution and aₙ = Σ_c tₙ,c (aₙ = 1, tₙ = onehot for the plain case: (p − onehot)/N).
    """

    def forward(
        self,
        x: Any,
        target: Any,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> Any:
        xp = get_array_module(x)
        if x.ndim < 2:
            raise ValueError(
                f"Expected logits of shape (N, C) or (N, C, d1, ...). Received: shape={tuple(x.shape)}"
            )
        n_classes = x.shape[1]
        if weight is not None and weight.shape != (n_classes,):
            raise ValueError(
                f"Expected weight of shape ({n_classes},). Received: shape={tuple(weight.shape)}"
            )
        soft = target.dtype.kind == "f"
        if soft and target.shape != x.shape:
            raise ValueError(
                f"Expected probability targets of the logits' shape {tuple(x.shape)}. "
                f"Received: shape={tuple(target.shape)}"
            )
        if not soft and (target.dtype.kind not in "iu" or target.shape != (x.shape[0], *x.shape[2:])):
            raise ValueError(
                f"Expected integer class indices of shape {(x.shape[0], *x.shape[2:])} "
                f"(or probabilities of shape "
                f"{tuple(x.shape)}). Received: target shape={tuple(target.shape)}, dtype={target.dtype}"
            )
        self.x_shape = x.shape
        self.reduction = reduction
        x2, out_shape = _to_rows(x)
        eps = float(label_smoothing)
        if not soft and weight is None and eps == 0 and not 0 <= ignore_index < n_classes:
            labels = target.reshape(-1)
            compiled = self._compiled_plain(x2, labels)
            if compiled is not None:
                p, loss = compiled
                self.plain, self.safe = True, labels
                return self._finish(xp, p, loss, 1.0, loss.shape[0], out_shape, x.dtype)
        rows = xp.arange(x2.shape[0])
        plain = False

        z = x2 - x2.max(axis=1, keepdims=True)
        if soft:
            t2, _ = _to_rows(target.astype(x.dtype, copy=False))
            if eps > 0:
                t2 = t2 * (1 - eps) + eps / n_classes
            wt = t2 * weight if weight is not None else t2  # w_c · t̃ₙ,c
            zt = xp.einsum("ij,ij->i", z, wt)
            a = wt.sum(axis=1)
        else:
            labels = target.reshape(-1)
            plain = (
                weight is None
                and eps == 0
                and labels.size > 0
                and not 0 <= ignore_index < n_classes
                and int(labels.min()) >= 0
                and int(labels.max()) < n_classes
            )
        if not soft and plain:  # the hot path: no weights, smoothing or ignored samples
            z_y = z[rows, labels]
            self.safe = labels
        elif not soft:
            valid = _check_labels(xp, labels, n_classes, ignore_index)
            safe = xp.where(valid, labels, 0)
            w_y = weight[safe] if weight is not None else xp.ones(labels.shape, dtype=x.dtype)
            w_y = xp.where(valid, w_y, 0).astype(x.dtype, copy=False)
            z_y = z[rows, safe]
            if eps > 0:
                w_all = weight if weight is not None else xp.ones(n_classes, dtype=x.dtype)
                zw = z @ w_all  # Σ_c w_c zₙ,c, taken before z is overwritten
            self.safe, self.valid = safe, valid
        xp.exp(z, out=z)  # z now holds e^(x − max)
        s = z.sum(axis=1)
        lse = xp.log(s)
        z /= s[:, None]  # z now holds the softmax p
        p = z

        self.plain = not soft and plain
        if soft:
            # ℓₙ = Σ_c w_c t̃ₙ,c (lse − z) = aₙ·lse − Σ_c w_c t̃ₙ,c zₙ,c
            loss = a * lse - zt
            self.t = wt
            denom = loss.shape[0]
        elif plain:
            loss = lse - z_y
            a = 1.0
            denom = loss.shape[0]
        else:
            loss = (1 - eps) * w_y * (lse - z_y)
            if eps > 0:
                # Σ_c w_c (−log pₙ,c) = W·lse − Σ_c w_c zₙ,c
                sum_w = w_all.sum()
                smooth = xp.where(valid, sum_w * lse - zw, 0)
                loss = loss + (eps / n_classes) * smooth
                a = (1 - eps) * w_y + xp.where(valid, (eps / n_classes) * sum_w, 0)
                self.w_all = w_all
            else:
                a = w_y
            self.w_y = w_y
            denom = w_y.sum()
        self.eps = eps
        self.soft = soft
        return self._finish(xp, p, loss, a, denom, out_shape, x.dtype)

    def _compiled_plain(self, x2: Any, labels: Any) -> tuple[Any, Any] | None:
        """(softmax, per-row loss) of the rows ``x2`` (M, C) from the row-wise kernels of
        :mod:`gradcraft.ops.kernels.loss`; None when the kernels do not apply or a label is
        outside [0, C) (ignored or invalid: the general path handles or reports it)."""
        if not labels.size or x2.dtype.kind != "f" or labels.dtype.kind not in "iu":
            return None
        fast = accel.kernels("loss", x2, labels)
        if fast is None:
            return None
        p = np.empty(x2.shape, dtype=x2.dtype)
        loss = np.empty(x2.shape[0], dtype=x2.dtype)
        if not fast.shift_by_row_max(x2, labels, p, loss):
            return None
        np.exp(p, out=p)
        fast.softmax_rows(p, loss)
        return p, loss

    def _finish(self, xp: Any, p: Any, loss: Any, a: Any, denom: Any, out_shape: Any, dtype: Any) -> Any:
        """Keep the softmax ``p`` and the backward scalars; reduce the per-row ``loss``."""
        self.a = a
        self.denom = denom
        self.n_classes = p.shape[1]
        self.save_for_backward(p)
        if self.reduction == "none":
            return loss.reshape(out_shape).astype(dtype, copy=False)
        total = loss.sum()
        if self.reduction == "mean":
            total = total / denom
        return xp.asarray(total, dtype=dtype)

    def backward(self, g: Any) -> Any:
        xp = get_array_module(g)
        (p,) = self.saved
        coef = _reduce_grad(g, self.reduction, self.denom)
        if self.plain:  # dx = (p − onehot)·coef
            if self.reduction != "none":
                fast = accel.kernels("loss", p, self.safe)
                if fast is not None:
                    grad = np.empty_like(p)
                    fast.softmax_cross_entropy_backward(p, self.safe, p.dtype.type(coef), grad)
                    return _from_rows(grad, self.x_shape), None
            rows = xp.arange(p.shape[0])
            if self.reduction == "none":
                coef = coef.astype(p.dtype, copy=False)
                grad = p * coef[:, None]
                grad[rows, self.safe] -= coef
            else:
                c = coef.astype(p.dtype, copy=False)
                grad = p * c
                grad[rows, self.safe] -= c
            return _from_rows(grad, self.x_shape), None
        if self.reduction == "none":
            coef = coef.astype(p.dtype, copy=False)
            grad = p * (self.a * coef)[:, None]
        else:
            grad = p * (self.a * coef).astype(p.dtype, copy=False)[:, None]
        if self.soft:
            grad -= self.t * (coef[:, None] if self.reduction == "none" else coef)
        else:
            rows = xp.arange(p.shape[0])
            scale = (1 - self.eps) * self.w_y * coef
            grad[rows, self.safe] -= scale.astype(p.dtype, copy=False)
            if self.eps > 0:
                k = (self.eps / self.n_classes) * xp.where(self.valid, coef, 0).astype(p.dtype, copy=False)
                grad -= k[:, None] * self.w_all
        return _from_rows(grad, self.x_shape).astype(p.dtype, copy=False), None


class NLL(Function):
    """Negative log-likelihood of log-probabilities x (N, C) / (N, C, d…) at class indices.

    ℓₙ = −w_{yₙ} x[n, yₙ] (0 if ignored); ``"mean"`` divides by Σ_{not ignored} w_{yₙ}.
    dx[n, yₙ] = −w_{yₙ}·scale, zero elsewhere.
    """

    def forward(
        self, x: Any, target: Any, weight: Any = None, ignore_index: int = -100, reduction: str = "mean"
    ) -> Any:
        xp = get_array_module(x)
        if x.ndim < 2:
            raise ValueError(
                f"Expected log-probabilities of shape (N, C) or (N, C, d1, ...). Received: "
                f"shape={tuple(x.shape)}"
            )
        n_classes = x.shape[1]
        if target.dtype.kind not in "iu" or target.shape != (x.shape[0], *x.shape[2:]):
            raise ValueError(
                f"Expected integer class indices of shape {(x.shape[0], *x.shape[2:])}. Received: target "
                f"shape={tuple(target.shape)}, dtype={target.dtype}"
            )
        if weight is not None and weight.shape != (n_classes,):
            raise ValueError(
                f"Expected weight of shape ({n_classes},). Received: shape={tuple(weight.shape)}"
            )
        x2, out_shape = _to_rows(x)
        labels = target.reshape(-1)
        valid = _check_labels(xp, labels, n_classes, ignore_index)
        safe = xp.where(valid, labels, 0)
        w_y = weight[safe] if weight is not None else xp.ones(labels.shape, dtype=x.dtype)
        w_y = xp.where(valid, w_y, 0).astype(x.dtype, copy=False)
        loss = -w_y * x2[xp.arange(x2.shape[0]), safe]
        self.safe, self.w_y, self.reduction = safe, w_y, reduction
        self.x_shape, self.rows_shape = x.shape, x2.shape
        self.denom = w_y.sum()
        if reduction == "none":
            return loss.reshape(out_shape)
        total = loss.sum()
        return xp.asarray(total / self.denom if reduction == "mean" else total, dtype=x.dtype)

    def backward(self, g: Any) -> Any:
        xp = get_array_module(g)
        coef = _reduce_grad(g, self.reduction, self.denom)
        grad = xp.zeros(self.rows_shape, dtype=g.dtype)
        grad[xp.arange(self.rows_shape[0]), self.safe] = -self.w_y * coef
        return _from_rows(grad, self.x_shape), None


def _reduce(xp: Any, loss: Any, reduction: str, dtype: Any) -> Any:
    if reduction == "none":
        return loss
    total = loss.mean() if reduction == "mean" else loss.sum()
    return xp.asarray(total, dtype=dtype)


def _expand_grad(g: Any, reduction: str, n: int) -> Any:
    """The incoming gradient as a factor on every element of the unreduced loss."""
    if reduction == "none":
        return g
    return g / n if reduction == "mean" else g


def _check_same_shape(x: Any, t: Any, what: str = "target") -> None:
    if tuple(getattr(t, "shape", ())) != tuple(x.shape):
        raise ValueError(
            f"Expected {what} of the input's shape {tuple(x.shape)}. "
            f"Received: shape={tuple(getattr(t, 'shape', ()))}"
        )


def _clamped_logs(xp: Any, p: Any) -> tuple[Any, Any]:
    """(max(log p, −100), max(log(1 − p), −100)) without evaluating log 0."""
    log_p = xp.where(p > 0, xp.log(xp.where(p > 0, p, 1)), -100)
    log_1p = xp.where(p < 1, xp.log1p(-xp.where(p < 1, p, 0)), -100)
    return xp.maximum(log_p, -100), xp.maximum(log_1p, -100)


class BinaryCrossEntropy(Function):
    """ℓ = −w·(t log p + (1 − t) log(1 − p)) for probabilities p, each log clamped at −100
    (PyTorch); dp = w·(p − t)/max(p(1 − p), 1e-12)."""

    def forward(self, p: Any, target: Any, weight: Any = None, reduction: str = "mean") -> Any:
        xp = get_array_module(p)
        _check_same_shape(p, target)
        if ((p < 0) | (p > 1)).any():
            raise ValueError(
                "Expected input probabilities in [0, 1] (apply a sigmoid, or use "
                "binary_cross_entropy_with_logits). Received: values outside [0, 1]"
            )
        log_p, log_1p = _clamped_logs(xp, p)
        loss = -(target * log_p + (1 - target) * log_1p)
        if weight is not None:
            loss = loss * weight
        self.save_for_backward(p, target, weight)
        self.reduction = reduction
        return _reduce(xp, loss.astype(p.dtype, copy=False), reduction, p.dtype)

    def backward(self, g: Any) -> tuple[Any, Any]:
        xp = get_array_module(g)
        p, t, w = self.saved
        coef = _expand_grad(g, self.reduction, p.size)
        grad = coef * (p - t) / xp.maximum(p * (1 - p), 1e-12)
        if w is not None:
            grad = grad * w
        gt = None
        if self.needs_input_grad[1]:
            log_p, log_1p = _clamped_logs(xp, p)
            gt = coef * (log_1p - log_p)
            if w is not None:
                gt = gt * w
            gt = xp.broadcast_to(gt, t.shape).astype(t.dtype)
        return xp.broadcast_to(grad, p.shape).astype(p.dtype, copy=False), gt


class BinaryCrossEntropyWithLogits(Function):
    """Sigmoid + binary cross-entropy on logits x, stable for any x:

    ℓ = w·[(1 − t)x + l·softplus(−x)], l = 1 + (pos_weight − 1)t, with
    softplus(−x) = log(1 + e^(−|x|)) + max(−x, 0);
    dx = w·[(1 − t) − l·σ(−x)]  (= w·(σ(x) − t) without pos_weight);
    dt = w·[−x + (pos_weight − 1)·softplus(−x)].
    """

    def forward(
        self, x: Any, target: Any, weight: Any = None, pos_weight: Any = None, reduction: str = "mean"
    ) -> Any:
        xp = get_array_module(x)
        _check_same_shape(x, target)
        sp_neg = xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)  # softplus(−x) = −log σ(x)
        if pos_weight is not None:
            lw = 1 + (pos_weight - 1) * target
            loss = (1 - target) * x + lw * sp_neg
        else:
            lw = None
            loss = (1 - target) * x + sp_neg
        if weight is not None:
            loss = loss * weight
        self.save_for_backward(x, target, weight, pos_weight, lw, sp_neg)
        self.reduction = reduction
        return _reduce(xp, loss.astype(x.dtype, copy=False), reduction, x.dtype)

    def backward(self, g: Any) -> tuple[Any, Any]:
        xp = get_array_module(g)
        x, t, w, pw, lw, sp_neg = self.saved
        coef = _expand_grad(g, self.reduction, x.size)
        sig_neg = 0.5 * (1 - xp.tanh(0.5 * x))  # σ(−x)
        grad = (1 - t) - (sig_neg if lw is None else lw * sig_neg)
        if w is not None:
            grad = grad * w
        grad = xp.broadcast_to(coef * grad, x.shape).astype(x.dtype, copy=False)
        gt = None
        if self.needs_input_grad[1]:
            dt = -x + (sp_neg * (pw - 1) if pw is not None else 0)
            if w is not None:
                dt = dt * w
            gt = xp.broadcast_to(coef * dt, t.shape).astype(t.dtype, copy=False)
        return grad, gt


class Regression(Function):
    """Elementwise regression losses of d = x − t, reduced:

    * ``"mse"``: d², dd = 2d
    * ``"l1"``: |d|, dd = sign d
    * ``"huber"`` (δ): ½d² if |d| < δ else δ(|d| − ½δ);  dd = clip(d, −δ, δ)
    * ``"smooth_l1"`` (β): ½d²/β if |d| < β else |d| − ½β;  dd = d/β or sign d (β = 0: L1)

    dx = dd·scale, dt = −dx.
    """

    def forward(
        self, x: Any, target: Any, kind: str = "mse", param: float = 1.0, reduction: str = "mean"
    ) -> Any:
        xp = get_array_module(x)
        _check_same_shape(x, target)
        d = x - target
        ad = xp.abs(d)
        if kind == "mse":
            loss = d * d
        elif kind == "l1":
            loss = ad
        elif kind == "huber":
            loss = xp.where(ad < param, 0.5 * d * d, param * (ad - 0.5 * param))
        elif kind == "smooth_l1":
            loss = ad if param == 0 else xp.where(ad < param, (0.5 / param) * d * d, ad - 0.5 * param)
        else:  # pragma: no cover - guarded by the public functions
            raise ValueError(f"Expected a regression loss kind. Received: kind={kind!r}")
        self.save_for_backward(d)
        self.kind, self.param, self.reduction = kind, param, reduction
        return _reduce(xp, loss, reduction, x.dtype)

    def backward(self, g: Any) -> tuple[Any, Any]:
        xp = get_array_module(g)
        (d,) = self.saved
        kind, param = self.kind, self.param
        if kind == "mse":
            dd = 2 * d
        elif kind == "l1" or (kind == "smooth_l1" and param == 0):
            dd = xp.sign(d)
        elif kind == "huber":
            dd = xp.clip(d, -param, param)
        else:
            dd = xp.where(xp.abs(d) < param, d / param, xp.sign(d))
        grad = _expand_grad(g, self.reduction, d.size) * dd
        grad = grad.astype(d.dtype, copy=False)
        need_x, need_t = self.needs_input_grad
        return (grad if need_x else None), (-grad if need_t else None)


class MultiMargin(Function):
    """Multi-class hinge loss of scores x (N, C) at class indices y.

    ℓₙ = (1/C)·Σ_{i ≠ yₙ} w_{yₙ}·max(0, margin − xₙ,yₙ + xₙ,ᵢ)^p  (PyTorch's MultiMarginLoss,
    ``class_reduction="mean"``), or without the 1/C (``"sum"``: the cs231n SVM loss
    Σ_{j ≠ y} max(0, s_j − s_y + Δ)). ``"mean"`` reduction averages over N.
    dxᵢ = scale·w_y·p·hᵢ^(p−1) for active margins hᵢ > 0, and dx_y = −Σᵢ dxᵢ.
    """

    def forward(
        self,
        x: Any,
        target: Any,
        p: int = 1,
        margin: float = 1.0,
        weight: Any = None,
        reduction: str = "mean",
        class_reduction: str = "mean",
    ) -> Any:
        xp = get_array_module(x)
        if x.ndim != 2:
            raise ValueError(f"Expected scores of shape (N, C). Received: shape={tuple(x.shape)}")
        n, c = x.shape
        if target.dtype.kind not in "iu" or target.shape != (n,):
            raise ValueError(
                f"Expected integer class indices of shape ({n},). Received: target "
                f"shape={tuple(target.shape)}, dtype={target.dtype}"
            )
        bad = (target < 0) | (target >= c)
        if bad.any():
            raise ValueError(
                f"Expected class indices in [0, {c}). "
                f"Received: target containing {int(target[bad].reshape(-1)[0])}"
            )
        if weight is not None and weight.shape != (c,):
            raise ValueError(f"Expected weight of shape ({c},). Received: shape={tuple(weight.shape)}")
        rows = xp.arange(n)
        h = margin - x[rows, target][:, None] + x
        h[rows, target] = 0
        h = xp.maximum(h, 0)
        per = h if p == 1 else h * h
        loss = per.sum(axis=1)
        if weight is not None:
            loss = loss * weight[target]
        div = c if class_reduction == "mean" else 1
        loss = loss / div
        self.save_for_backward(h, target, weight)
        self.p, self.div, self.reduction = p, div, reduction
        return _reduce(xp, loss.astype(x.dtype, copy=False), reduction, x.dtype)

    def backward(self, g: Any) -> Any:
        xp = get_array_module(g)
        h, target, weight = self.saved
        n = h.shape[0]
        coef = _expand_grad(g, self.reduction, n) / self.div
        coef = coef * (xp.ones(n, dtype=h.dtype) if weight is None else weight[target])
        grad = (h > 0).astype(h.dtype) if self.p == 1 else 2 * h
        grad *= coef[:, None]
        rows = xp.arange(n)
        grad[rows, target] = -grad.sum(axis=1)
        return grad, None


def cross_entropy(
    input: Tensor,  # noqa: A002 - PyTorch's name
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Softmax cross-entropy of logits (N, C) / (N, C, d…) against class indices (N,) / (N, d…)
    or probabilities of the logits' shape (see the module docstring for the exact formulas).

    Args:
        input: unnormalized scores (logits).
        target: integer class indices, or class probabilities (floating, same shape).
        weight: per-class weights (C,).
        ignore_index: class index whose samples contribute nothing (indices targets only).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        label_smoothing: ε in [0, 1]: the target becomes (1 − ε)·target + ε/C.
    """
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"Expected label_smoothing in [0, 1]. Received: label_smoothing={label_smoothing}")
    t = _data(target)
    xp = get_array_module(input.data)
    t = xp.asarray(t)
    w = None if weight is None else xp.asarray(_data(weight), dtype=input.dtype)
    return CrossEntropy.apply(
        input, t, weight=w, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing
    )


def nll_loss(
    input: Tensor,  # noqa: A002
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of log-probabilities (N, C) at class indices (N,)."""
    _check_reduction(reduction)
    xp = get_array_module(input.data)
    w = None if weight is None else xp.asarray(_data(weight), dtype=input.dtype)
    return NLL.apply(
        input, xp.asarray(_data(target)), weight=w, ignore_index=ignore_index, reduction=reduction
    )


def _as_operand(x: Any, like: Tensor) -> Any:
    """Keep Tensors (so targets can be differentiated); arrays and numbers become arrays."""
    if isinstance(x, Tensor):
        return x
    xp = get_array_module(like.data)
    return xp.asarray(x, dtype=like.dtype)


def binary_cross_entropy(
    input: Tensor,  # noqa: A002
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
) -> Tensor:
    """Binary cross-entropy of probabilities p ∈ [0, 1] (any shape) and targets of that shape."""
    _check_reduction(reduction)
    xp = get_array_module(input.data)
    w = None if weight is None else xp.asarray(_data(weight), dtype=input.dtype)
    return BinaryCrossEntropy.apply(input, _as_operand(target, input), weight=w, reduction=reduction)


def binary_cross_entropy_with_logits(
    input: Tensor,  # noqa: A002
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    pos_weight: Any = None,
) -> Tensor:
    """Sigmoid + binary cross-entropy on logits, computed stably; ``pos_weight`` (broadcast
    along the last axis, one per class) multiplies the positive term."""
    _check_reduction(reduction)
    xp = get_array_module(input.data)
    w = None if weight is None else xp.asarray(_data(weight), dtype=input.dtype)
    pw = None if pos_weight is None else xp.asarray(_data(pos_weight), dtype=input.dtype)
    return BinaryCrossEntropyWithLogits.apply(
        input, _as_operand(target, input), weight=w, pos_weight=pw, reduction=reduction
    )


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:  # noqa: A002
    """Mean squared error: mean of (x − t)²."""
    _check_reduction(reduction)
    return Regression.apply(input, _as_operand(target, input), kind="mse", reduction=reduction)


def l1_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:  # noqa: A002
    """Mean absolute error: mean of |x − t|."""
    _check_reduction(reduction)
    return Regression.apply(input, _as_operand(target, input), kind="l1", reduction=reduction)


def huber_loss(input: Tensor, target: Any, reduction: str = "mean", delta: float = 1.0) -> Tensor:  # noqa: A002
    """Huber loss: ½d² for |d| < δ, δ(|d| − ½δ) beyond."""
    _check_reduction(reduction)
    if delta <= 0:
        raise ValueError(f"Expected delta > 0. Received: delta={delta}")
    return Regression.apply(
        input, _as_operand(target, input), kind="huber", param=float(delta), reduction=reduction
    )


def smooth_l1_loss(input: Tensor, target: Any, reduction: str = "mean", beta: float = 1.0) -> Tensor:  # noqa: A002
    """Smooth L1: ½d²/β for |d| < β, |d| − ½β beyond (= Huber(δ=β)/β)."""
    _check_reduction(reduction)
    if beta < 0:
        raise ValueError(f"Expected beta >= 0. Received: beta={beta}")
    return Regression.apply(
        input, _as_operand(target, input), kind="smooth_l1", param=float(beta), reduction=reduction
    )


def multi_margin_loss(
    input: Tensor,  # noqa: A002
    target: Any,
    p: int = 1,
    margin: float = 1.0,
    weight: Any = None,
    reduction: str = "mean",
    class_reduction: str = "mean",
) -> Tensor:
    """Multi-class hinge (SVM) loss. ``class_reduction="mean"`` is PyTorch's
    ``MultiMarginLoss`` (divides each sample's sum over classes by C); ``"sum"`` is the cs231n
    SVM loss (sum over the wrong classes, averaged over the batch with ``reduction="mean"``)."""
    _check_reduction(reduction)
    if p not in (1, 2):
        raise ValueError(f"Expected p = 1 or 2. Received: p={p!r}")
    if class_reduction not in ("mean", "sum"):
        raise ValueError(
            f"Expected class_reduction 'mean' or 'sum'. Received: class_reduction={class_reduction!r}"
        )
    xp = get_array_module(input.data)
    w = None if weight is None else xp.asarray(_data(weight), dtype=input.dtype)
    return MultiMargin.apply(
        input,
        xp.asarray(_data(target)),
        p=p,
        margin=margin,
        weight=w,
        reduction=reduction,
        class_reduction=class_reduction,
    )
