"""Regularization penalties and constraints: L1, L2, elastic net, activation L1, max-norm.

Penalties are added to the data loss, ``loss = data_loss + Σ λ·R(W)``::

    l2 = L2(5e-4)
    loss = criterion(model(x), y) + l2(model)

Each penalty is a callable ``reg(model) -> Tensor`` (a 0-d tensor in the graph, so
``loss.backward()`` adds its gradient to each weight's). By default it covers the *weights*
only: parameters with more than one dimension that do not belong to a normalization layer
— biases, batch/layer norm's γ and β and PReLU's α are skipped (regularizing them only
hurts). Pass ``include=lambda name, param: ...`` to choose otherwise.

Convention (the lectures'): ``L2(λ)`` is **λ·‖W‖²** = λ Σ W², whose gradient is 2λW; this
equals SGD ``weight_decay = 2λ``. ``L2(λ, half=True)`` is ½λ‖W‖² (gradient λW, the same as
``weight_decay = λ``).

``MaxNorm`` is a constraint, not a penalty: call ``constraint.apply(model)`` after each
``optimizer.step()``; it rescales each unit's incoming weight vector w so that ‖w‖₂ ≤ c
(Srivastava et al., 2014).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from gradcraft import backend
from gradcraft.autograd import grad_mode
from gradcraft.autograd.tensor import Tensor
from gradcraft.backend import get_array_module
from gradcraft.nn.module import Module, Parameter, RemovableHandle
from gradcraft.nn.normalization import LayerNorm, _BatchNorm
from gradcraft.ops.elementwise import abs as _abs
from gradcraft.ops.elementwise import add, mul
from gradcraft.ops.reduce import sum as _sum

__all__ = [
    "L1",
    "L2",
    "ActivationL1",
    "ElasticNet",
    "MaxNorm",
    "Regularizer",
    "default_include",
    "select_parameters",
]

Include = Callable[[str, Parameter], bool]

#: module types whose parameters are never penalized by default
NORM_LAYERS: tuple[type, ...] = (_BatchNorm, LayerNorm)


def default_include(name: str, param: Parameter) -> bool:
    """The default selection: weights only (more than one dimension)."""
    return param.ndim > 1


def select_parameters(
    model: Module | Iterable[Parameter], include: Include | None = None
) -> list[tuple[str, Parameter]]:
    """(name, parameter) pairs a penalty or constraint acts on.

    For a Module: parameters passing ``include`` (default :func:`default_include`), minus
    those owned by normalization layers (unless ``include`` is given). An iterable of
    Parameters is taken as is (named ``"0"``, ``"1"``, …).
    """
    if not isinstance(model, Module):
        return [(str(i), p) for i, p in enumerate(model)]
    skip: set[int] = set()
    if include is None:
        for m in model.modules():
            if isinstance(m, NORM_LAYERS):
                skip.update(id(p) for p in m.parameters(recurse=False))
    keep = include or default_include
    return [(n, p) for n, p in model.named_parameters() if id(p) not in skip and keep(n, p)]


def _check_strength(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(
            f"Expected a non-negative regularization strength {name}. Received: {name}={value!r}"
        )
    return float(value)


class Regularizer:
    """Base class: ``reg(model)`` returns the penalty λ·R over the selected parameters."""

    def __init__(self, include: Include | None = None) -> None:
        self.include = include

    def penalty(self, param: Parameter) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, model: Module | Iterable[Parameter]) -> Tensor:
        params = select_parameters(model, self.include)
        total: Tensor | None = None
        for _, p in params:
            term = self.penalty(p)
            total = term if total is None else add(total, term)
        if total is None:
            return Tensor(np.zeros((), dtype=backend.default_dtype()))
        return total


class L2(Regularizer):
    """λ·Σ W² over the selected weights (gradient 2λW); with ``half=True``, ½λ·Σ W² (gradient λW).

    Args:
        strength: λ ≥ 0.
        half: use the ½ convention (matches ``weight_decay=λ``).
        include: ``f(name, param) -> bool`` selecting parameters (default: weights only).
    """

    def __init__(self, strength: float, half: bool = False, include: Include | None = None) -> None:
        super().__init__(include)
        self.strength = _check_strength("strength", strength)
        self.half = half

    def penalty(self, param: Parameter) -> Tensor:
        coef = self.strength * (0.5 if self.half else 1.0)
        return mul(_sum(mul(param, param)), coef)

    def __repr__(self) -> str:
        return f"L2(strength={self.strength}, half={self.half})"


class L1(Regularizer):
    """λ·Σ |W| over the selected weights (gradient λ·sign W; drives weights to exactly 0).

    Args:
        strength: λ ≥ 0.
        include: parameter selection (default: weights only).
    """

    def __init__(self, strength: float, include: Include | None = None) -> None:
        super().__init__(include)
        self.strength = _check_strength("strength", strength)

    def penalty(self, param: Parameter) -> Tensor:
        return mul(_sum(_abs(param)), self.strength)

    def __repr__(self) -> str:
        return f"L1(strength={self.strength})"


class ElasticNet(Regularizer):
    """λ₁·Σ |W| + λ₂·Σ W² (Zou & Hastie, 2005; cs231n's β W² + |W|), each with its own λ.

    The L2 part follows :class:`L2`'s convention (λ₂‖W‖², or ½λ₂‖W‖² with ``half=True``).
    """

    def __init__(self, l1: float, l2: float, half: bool = False, include: Include | None = None) -> None:
        super().__init__(include)
        self.l1 = _check_strength("l1", l1)
        self.l2 = _check_strength("l2", l2)
        self.half = half

    def penalty(self, param: Parameter) -> Tensor:
        sq = mul(_sum(mul(param, param)), self.l2 * (0.5 if self.half else 1.0))
        return add(mul(_sum(_abs(param)), self.l1), sq)

    def __repr__(self) -> str:
        return f"ElasticNet(l1={self.l1}, l2={self.l2}, half={self.half})"


class ActivationL1:
    """An L1 (sparsity) penalty on chosen layers' outputs, collected by forward hooks.

    Each training-mode forward of a watched layer (with grad enabled) records
    λ · (1/N) Σ |a| — the sum over units of the output a (N, …), averaged over the batch —
    and ``act_reg()`` returns the sum of the records since the last call (and clears them)::

        act_reg = ActivationL1(1e-4, [model.fc1, model.fc2])   # or names, with model=
        loss = criterion(model(x), y) + act_reg()

    Args:
        strength: λ ≥ 0.
        modules: the layers whose outputs are penalized (Modules, or dotted names resolved
            in ``model``).
        model: needed only when ``modules`` are names.
    """

    def __init__(self, strength: float, modules: Iterable[Module | str], model: Module | None = None) -> None:
        self.strength = _check_strength("strength", strength)
        self._terms: list[Tensor] = []
        self._handles: list[RemovableHandle] = []
        for m in modules:
            if isinstance(m, str):
                if model is None:
                    raise ValueError(f"Expected model= to resolve layer names. Received: module name {m!r}")
                module = model.get_submodule(m)
            else:
                module = m
            if not isinstance(module, Module):
                raise TypeError(f"Expected Modules or layer names. Received: type={type(module).__name__}")
            self._handles.append(module.register_forward_hook(self._hook))

    def _hook(self, module: Module, inputs: tuple, output: Any) -> None:
        if not module.training or not grad_mode.is_grad_enabled() or not isinstance(output, Tensor):
            return
        n = output.shape[0] if output.ndim else 1
        self._terms.append(mul(_sum(_abs(output)), self.strength / n))

    def __call__(self, model: Any = None) -> Tensor:
        """The accumulated penalty (0 if nothing was recorded); clears the records."""
        terms, self._terms = self._terms, []
        if not terms:
            return Tensor(np.zeros((), dtype=backend.default_dtype()))
        total = terms[0]
        for t in terms[1:]:
            total = add(total, t)
        return total

    def remove(self) -> None:
        """Unregister the hooks."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._terms.clear()

    def __repr__(self) -> str:
        return f"ActivationL1(strength={self.strength}, layers={len(self._handles)})"


class MaxNorm:
    """Max-norm constraint (Srivastava et al., 2014): after each optimizer step, rescale every
    unit's weight vector w so that ‖w‖₂ ≤ c:  w ← w · min(1, c / ‖w‖₂).

    Args:
        max_norm: c > 0 (3–4 in the dropout paper).
        axis: axes the norm is taken over. Default ``None``: all but axis 0, i.e. each
            output unit's incoming weights (rows of a Linear weight (out, in), filters of a
            conv weight (C_out, C_in, k, k)).
        include: parameter selection (default: weights only, as the penalties).
    """

    def __init__(
        self, max_norm: float, axis: int | tuple[int, ...] | None = None, include: Include | None = None
    ) -> None:
        if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or max_norm <= 0:
            raise ValueError(f"Expected max_norm > 0. Received: max_norm={max_norm!r}")
        self.max_norm = float(max_norm)
        self.axis = axis
        self.include = include

    def apply(self, model: Module | Iterable[Parameter]) -> None:
        """Rescale the selected parameters in place (no graph is recorded)."""
        with grad_mode.no_grad():
            for _, p in select_parameters(model, self.include):
                w = p.data
                xp = get_array_module(w)
                axes = tuple(range(1, w.ndim)) if self.axis is None else self.axis
                norms = xp.sqrt((w * w).sum(axis=axes, keepdims=True))
                scale = xp.minimum(1.0, self.max_norm / xp.maximum(norms, 1e-12))
                w *= scale.astype(w.dtype, copy=False)

    def __repr__(self) -> str:
        return f"MaxNorm(max_norm={self.max_norm}, axis={self.axis})"
