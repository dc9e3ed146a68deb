"""Measurements the checks are made of: activation statistics (through forward hooks),
per-layer gradient norms and update/weight ratios.

* :func:`activation_kind` — which nonlinearity a module is (``"relu"``, ``"tanh"``, ...);
* :class:`ActivationRecorder` — forward hooks on the activation layers that summarize each
  output: mean, std, fraction saturated (tanh: |y| > 0.99; sigmoid: y outside
  [0.01, 0.99]), fraction of dead units (ReLU: a unit — a feature of an (N, D) output, a
  channel of an (N, C, …) output — that is never positive on the batch), and a small random
  sample of values for histograms;
* :func:`parameter_stats` — per parameter: ‖W‖, ‖∇W‖ and the fraction of zero gradients;
* :func:`snapshot_weights` / :func:`update_ratios` — ‖ΔW‖ / ‖W‖ of one optimizer step
  (cs231n: ≈ 1e-3 is healthy).

Everything here reads raw arrays (``tensor.data``) and never records a graph.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradcraft.autograd.tensor import Tensor

__all__ = [
    "ActivationRecorder",
    "ActivationStats",
    "ParamStats",
    "activation_kind",
    "activation_modules",
    "parameter_stats",
    "snapshot_weights",
    "summarize_activation",
    "to_numpy",
    "update_ratios",
]

# class name (lower case) -> kind; user-defined modules with these names are recognized too
_KINDS: dict[str, str] = {
    "relu": "relu",
    "relu6": "relu",
    "leakyrelu": "leaky_relu",
    "prelu": "leaky_relu",
    "rrelu": "leaky_relu",
    "elu": "elu",
    "selu": "elu",
    "celu": "elu",
    "gelu": "gelu",
    "silu": "gelu",
    "swish": "gelu",
    "mish": "gelu",
    "softplus": "softplus",
    "tanh": "tanh",
    "hardtanh": "tanh",
    "sigmoid": "sigmoid",
    "hardsigmoid": "sigmoid",
}

#: nonlinearities whose outputs saturate, and those that can die
SATURATING = frozenset({"tanh", "sigmoid"})
RELU_LIKE = frozenset({"relu"})


def activation_kind(module: Any) -> str | None:
    """The nonlinearity a module applies (``"relu"``, ``"leaky_relu"``, ``"elu"``,
    ``"gelu"``, ``"softplus"``, ``"tanh"``, ``"sigmoid"``), or ``None`` for other layers.

    Recognized by class name, so a user's own ``class ReLU(Module)`` counts too.
    """
    return _KINDS.get(type(module).__name__.lower())


def activation_modules(model: Any) -> list[tuple[str, Any]]:
    """``(name, module)`` of every activation layer of ``model``, in registration order."""
    return [(name or type(m).__name__, m) for name, m in model.named_modules() if activation_kind(m)]


def to_numpy(value: Any) -> np.ndarray:
    """A NumPy array from a Tensor, a NumPy array or a CuPy array (copied to the host)."""
    if isinstance(value, Tensor):
        value = value.data
    if type(value).__module__.startswith("cupy"):
        value = value.get()
    return np.asarray(value)


@dataclass
class ActivationStats:
    """Summary of one activation layer's output on one batch.

    Attributes:
        name: the layer's dotted name in the model.
        kind: :func:`activation_kind` of the layer (``None`` for non-activation layers).
        shape: the output's shape.
        mean, std: over every element.
        saturated: fraction of elements saturated (tanh/sigmoid; ``None`` otherwise).
        dead: fraction of units never positive on the batch (ReLU; ``None`` otherwise).
        zero: fraction of elements exactly zero.
        nonfinite: fraction of NaN/inf elements.
        sample: up to ``sample_size`` values drawn at random, for histograms.
    """

    name: str
    kind: str | None
    shape: tuple[int, ...]
    mean: float
    std: float
    saturated: float | None
    dead: float | None
    zero: float
    nonfinite: float
    sample: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.float32))

    def to_dict(self) -> dict[str, Any]:
        """The scalar statistics (no sample) as a plain dict."""
        out: dict[str, Any] = {"mean": self.mean, "std": self.std, "zero": self.zero}
        if self.saturated is not None:
            out["saturated"] = self.saturated
        if self.dead is not None:
            out["dead"] = self.dead
        if self.nonfinite:
            out["nonfinite"] = self.nonfinite
        return out


def summarize_activation(
    name: str,
    kind: str | None,
    y: Any,
    sample_size: int = 2000,
    rng: np.random.Generator | None = None,
) -> ActivationStats:
    """Statistics of one output array ``y`` (batch on axis 0) of an activation layer."""
    a = to_numpy(y)
    flat = a.reshape(-1)
    finite = np.isfinite(flat)
    nonfinite = 1.0 - float(finite.mean()) if flat.size else 0.0
    vals = flat if nonfinite == 0.0 else flat[finite]
    v64 = vals.astype(np.float64, copy=False)
    mean = float(v64.mean()) if v64.size else math.nan
    std = float(v64.std()) if v64.size else math.nan
    saturated: float | None = None
    if kind == "tanh":
        saturated = float(np.mean(np.abs(vals) > 0.99)) if vals.size else 0.0
    elif kind == "sigmoid":
        saturated = float(np.mean((vals < 0.01) | (vals > 0.99))) if vals.size else 0.0
    dead: float | None = None
    if kind in RELU_LIKE and a.ndim >= 2 and a.shape[0] > 0:
        per_unit = a.reshape(a.shape[0], a.shape[1], -1)  # (N, units, positions)
        active = (per_unit > 0).any(axis=(0, 2))
        dead = float(1.0 - active.mean()) if active.size else 0.0
    zero = float(np.mean(flat == 0)) if flat.size else 0.0
    if vals.size > sample_size:
        rng = rng or np.random.default_rng(0)
        sample = rng.choice(vals, size=sample_size, replace=False)
    else:
        sample = vals.copy()
    return ActivationStats(
        name=name,
        kind=kind,
        shape=tuple(a.shape),
        mean=mean,
        std=std,
        saturated=saturated,
        dead=dead,
        zero=zero,
        nonfinite=nonfinite,
        sample=np.asarray(sample, dtype=np.float32),
    )


class ActivationRecorder:
    """Forward hooks that summarize the outputs of a model's activation layers.

    Use as a context manager (hooks are removed on exit)::

        with ActivationRecorder(model) as rec:
            model(x)
        for s in rec.stats():   # one ActivationStats per activation layer, in call order
            print(s.name, s.std, s.saturated, s.dead)

    Args:
        model: the model to watch.
        modules: ``(name, module)`` pairs to hook instead of the activation layers. When
            ``None`` and the model has no activation layers (activations applied as
            functions inside ``forward``), every layer with parameters is hooked, so at least
            the pre-activation statistics are seen.
        sample_size: values kept per layer for histograms.
        rng: generator for the sample (default: seeded with 0, so runs repeat).

    Each hooked call is summarized as soon as it happens (nothing of the batch is kept but
    the sample); a layer called twice in one forward gets entries ``name`` and ``name[2]``.
    """

    def __init__(
        self,
        model: Any,
        modules: Iterable[tuple[str, Any]] | None = None,
        sample_size: int = 2000,
        rng: np.random.Generator | None = None,
    ) -> None:
        if modules is None:
            mods = activation_modules(model)
            if not mods:
                mods = [
                    (n, m) for n, m in model.named_modules() if n and any(True for _ in m.parameters(False))
                ]
        else:
            mods = list(modules)
        self.modules = mods
        self.sample_size = int(sample_size)
        self.rng = rng or np.random.default_rng(0)
        self._handles: list[Any] = []
        self._stats: list[ActivationStats] = []
        self._calls: dict[str, int] = {}

    def _hook_for(self, name: str, kind: str | None) -> Any:
        def hook(module: Any, inputs: tuple, output: Any) -> None:
            if not isinstance(output, (Tensor, np.ndarray)) and not hasattr(output, "shape"):
                return
            n = self._calls.get(name, 0) + 1
            self._calls[name] = n
            label = name if n == 1 else f"{name}[{n}]"
            self._stats.append(summarize_activation(label, kind, output, self.sample_size, self.rng))

        return hook

    def attach(self) -> ActivationRecorder:
        """Register the hooks (idempotent)."""
        if not self._handles:
            for name, module in self.modules:
                self._handles.append(
                    module.register_forward_hook(self._hook_for(name, activation_kind(module)))
                )
        return self

    def detach(self) -> None:
        """Remove the hooks."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def clear(self) -> None:
        """Forget what was recorded (hooks stay)."""
        self._stats = []
        self._calls = {}

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def stats(self) -> list[ActivationStats]:
        """What was recorded since the last :meth:`clear`, in call order."""
        return list(self._stats)

    def __enter__(self) -> ActivationRecorder:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()


@dataclass
class ParamStats:
    """Norms of one parameter and its gradient.

    Attributes:
        name: the parameter's dotted name (``"features.0.weight"``).
        layer: the owning layer's dotted name (``"features.0"``).
        shape: the parameter's shape.
        weight_norm: ‖W‖ (Frobenius).
        grad_norm: ‖∇W‖ (``None`` when the parameter has no gradient).
        grad_zero: fraction of exactly-zero gradient entries (``None`` without gradient).
        finite: whether W and ∇W are free of NaN/inf.
    """

    name: str
    layer: str
    shape: tuple[int, ...]
    weight_norm: float
    grad_norm: float | None
    grad_zero: float | None
    finite: bool

    @property
    def is_weight(self) -> bool:
        """A weight matrix or kernel (≥ 2 dimensions), as opposed to a bias or norm scale."""
        return len(self.shape) >= 2


def _norm(a: np.ndarray) -> float:
    return float(np.sqrt(np.sum(np.square(a, dtype=np.float64))))


def parameter_stats(model: Any) -> list[ParamStats]:
    """:class:`ParamStats` of every parameter of ``model``, in registration order (which is
    the order of depth for ``Sequential`` models and for layers assigned in ``__init__`` in
    the order they are applied)."""
    out = []
    for name, p in model.named_parameters():
        w = to_numpy(p.data)
        g = None if p.grad is None else to_numpy(p.grad)
        finite = bool(np.isfinite(w).all()) and (g is None or bool(np.isfinite(g).all()))
        out.append(
            ParamStats(
                name=name,
                layer=name.rpartition(".")[0],
                shape=tuple(w.shape),
                weight_norm=_norm(w),
                grad_norm=None if g is None else _norm(g),
                grad_zero=None if g is None else float(np.mean(g == 0)) if g.size else 0.0,
                finite=finite,
            )
        )
    return out


def snapshot_weights(model: Any, weights_only: bool = True) -> dict[str, np.ndarray]:
    """Copies of the parameters (only those with ≥ 2 dimensions when ``weights_only``),
    taken before an optimizer step so :func:`update_ratios` can measure it."""
    return {
        name: np.array(to_numpy(p.data), copy=True)
        for name, p in model.named_parameters()
        if p.requires_grad and (not weights_only or p.data.ndim >= 2)
    }


def update_ratios(model: Any, before: dict[str, np.ndarray]) -> dict[str, float]:
    """‖W_after − W_before‖ / ‖W_before‖ for each parameter in ``before``.

    A parameter whose norm was 0 gets ``inf`` if it moved, else 0.
    """
    params = dict(model.named_parameters())
    out: dict[str, float] = {}
    for name, w0 in before.items():
        p = params.get(name)
        if p is None:
            continue
        w1 = to_numpy(p.data)
        if w1.shape != w0.shape:
            continue
        dn = _norm(w1.astype(np.float64) - w0)
        wn = _norm(w0)
        out[name] = dn / wn if wn > 0 else (math.inf if dn > 0 else 0.0)
    return out
