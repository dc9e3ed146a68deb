"""Loss modules: ``loss_fn = CrossEntropyLoss(); loss = loss_fn(logits, labels)``.

Thin wrappers over :mod:`gradcraft.ops.loss`, with PyTorch's names, arguments and
semantics (see there for the formulas). ``reduction`` is ``"mean"`` (default), ``"sum"`` or
``"none"``.
"""

from __future__ import annotations

from typing import Any

from gradcraft.autograd.tensor import Tensor
from gradcraft.nn.module import Module
from gradcraft.ops import loss as L

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "HuberLoss",
    "L1Loss",
    "MSELoss",
    "MultiMarginLoss",
    "NLLLoss",
    "SmoothL1Loss",
]


class _Loss(Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        L._check_reduction(reduction)
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}" if self.reduction != "mean" else ""


class _WeightedLoss(_Loss):
    def __init__(self, weight: Any = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if weight is None:
            self.register_buffer("weight", None)
        else:
            self.register_buffer("weight", weight if isinstance(weight, Tensor) else Tensor(weight))


class CrossEntropyLoss(_WeightedLoss):
    """Softmax cross-entropy on logits, in one fused, numerically stable op.

    Input (N, C) (or (N, C, d1, …)); target class indices (N,) (or (N, d1, …)) or class
    probabilities shaped like the input.

    Args:
        weight: per-class weights (C,). With index targets and ``"mean"`` the result is
            Σ wᵧℓ / Σ wᵧ over the non-ignored samples, as PyTorch.
        ignore_index: samples with this target contribute neither loss nor count (-100).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        label_smoothing: ε: targets become (1 − ε)·target + ε/C (Szegedy et al., 2016).

    At initialization, with small random weights, the loss should be ≈ ln C.
    """

    def __init__(
        self,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(weight, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(
                f"Expected label_smoothing in [0, 1]. Received: label_smoothing={label_smoothing}"
            )
        self.ignore_index = ignore_index
        self.label_smoothing = float(label_smoothing)

    def forward(self, input: Tensor, target: Any) -> Tensor:  # noqa: A002
        return L.cross_entropy(
            input, target, self.weight, self.ignore_index, self.reduction, self.label_smoothing
        )

    def extra_repr(self) -> str:
        parts = [super().extra_repr()] if self.reduction != "mean" else []
        if self.label_smoothing:
            parts.append(f"label_smoothing={self.label_smoothing}")
        return ", ".join(parts)


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of log-probabilities (N, C) (e.g. from ``LogSoftmax``) at class
    indices; ``weight`` and ``ignore_index`` as :class:`CrossEntropyLoss`."""

    def __init__(self, weight: Any = None, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(weight, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Any) -> Tensor:  # noqa: A002
        return L.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class BCELoss(_WeightedLoss):
    """Binary cross-entropy −w[t log p + (1 − t) log(1 − p)] of probabilities p (after a
    sigmoid); logs are clamped at −100 as in PyTorch. Prefer :class:`BCEWithLogitsLoss`."""

    def forward(self, input: Tensor, target: Any) -> Tensor:  # noqa: A002
        return L.binary_cross_entropy(input, target, self.weight, self.reduction)


class BCEWithLogitsLoss(_WeightedLoss):
    """Sigmoid + binary cross-entropy on logits in one stable op.

    Args:
        weight: per-element weight, broadcast to the input.
        pos_weight: weight of positive examples per class (broadcast along the last axis);
            > 1 raises recall, e.g. n_negative / n_positive.
    """

    def __init__(self, weight: Any = None, reduction: str = "mean", pos_weight: Any = None) -> None:
        super().__init__(weight, reduction)
        if pos_weight is None:
            self.register_buffer("pos_weight", None)
        else:
            self.register_buffer(
                "pos_weight", pos_weight if isinstance(pos_weight, Tensor) else Tensor(pos_weight)
            )

    def forward(self, input: Tensor, target: Any) -> Tensor:  # noqa: A002
        return L.binary_cross_entropy_with_logits(input, target, self.weight, self.reduction, self.pos_weight)


class MSELoss(_Loss):
    """Mean squared error (x − t)²."""

    def forward(self, input: Tensor, target: Any) -> Tensor:  # noqa: A002
        return L.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    """Mean absolute error |x − t|."""

    def forward(self, input: Tensor, target: Any) -> Tensor:  # noqa: A002
        return L.l1_loss(input, target, self.reduction)


class HuberLoss(_Loss):
    """½d² for |d| < δ, δ(|d| − ½δ) beyond (d = x − t; δ = ``delta``, 1 by default)."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        if delta <= 0:
            raise ValueError(f"Expected delta > 0. Received: delta={delta}")
        self.delta = float(delta)

    def forward(self, input: Tensor, target: Any) -> Tensor:  # noqa: A002
        return L.huber_loss(input, target, self.reduction, self.delta)


class SmoothL1Loss(_Loss):
    """½d²/β for |d| < β, |d| − ½β beyond (β = ``beta``, 1 by default; Fast R-CNN's loss)."""

    def __init__(self, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction)
        if beta < 0:
            raise ValueError(f"Expected beta >= 0. Received: beta={beta}")
        self.beta = float(beta)

    def forward(self, input: Tensor, target: Any) -> Tensor:  # noqa: A002
        return L.smooth_l1_loss(input, target, self.reduction, self.beta)


class MultiMarginLoss(_WeightedLoss):
    """Multi-class hinge (SVM) loss of scores (N, C) at class indices (N,).

    PyTorch's form (``class_reduction="mean"``, the default):
    ℓₙ = (1/C) Σ_{i ≠ y} w_y·max(0, margin − x_y + x_i)^p.
    The cs231n SVM form (``class_reduction="sum"``): ℓₙ = Σ_{j ≠ y} max(0, s_j − s_y + Δ),
    averaged over the batch by ``reduction="mean"`` (Δ = ``margin`` = 1).

    Args:
        p: 1 (hinge) or 2 (squared hinge).
        margin: Δ.
        weight: per-class weights (C,), multiplying each sample's loss by w of its class.
    """

    def __init__(
        self,
        p: int = 1,
        margin: float = 1.0,
        weight: Any = None,
        reduction: str = "mean",
        class_reduction: str = "mean",
    ) -> None:
        super().__init__(weight, reduction)
        if p not in (1, 2):
            raise ValueError(f"Expected p = 1 or 2. Received: p={p!r}")
        if class_reduction not in ("mean", "sum"):
            raise ValueError(
                f"Expected class_reduction 'mean' or 'sum'. Received: class_reduction={class_reduction!r}"
            )
        self.p = p
        self.margin = float(margin)
        self.class_reduction = class_reduction

    def forward(self, input: Tensor, target: Any) -> Tensor:  # noqa: A002
        return L.multi_margin_loss(
            input, target, self.p, self.margin, self.weight, self.reduction, self.class_reduction
        )
