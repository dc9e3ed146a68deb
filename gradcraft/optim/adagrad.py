"""Adagrad: per-coordinate learning rates from the sum of squared gradients."""

from __future__ import annotations

from typing import Any

from gradcraft.optim.optimizer import Optimizer, check_range, full_like

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    r"""Adagrad (Duchi, Hazan & Singer, 2011), PyTorch's ``torch.optim.Adagrad``.

    The update, per parameter, as PyTorch writes it::

        input: lr γ, params θ_0, objective f(θ), weight_decay λ, lr_decay η,
               initial_accumulator_value τ, eps ε, maximize;   state_sum_0 = τ
        for t = 1, 2, ...
            g_t = ∇f(θ_{t-1})                      (−∇f if maximize)
            γ̃ = γ / (1 + (t − 1) η)
            if λ ≠ 0:  g_t = g_t + λ θ_{t-1}
            state_sum_t = state_sum_{t-1} + g_t²
            θ_t = θ_{t-1} − γ̃ g_t / (√state_sum_t + ε)

    The lectures (cs231n) write it as::

        cache += dx**2
        x += - learning_rate * dx / (np.sqrt(cache) + eps)

    the same rule with ``cache`` = ``state_sum`` (τ = 0, η = 0). Each coordinate's step
    shrinks with its accumulated gradient, so rarely-updated coordinates keep large steps; the
    monotone accumulation also makes the effective rate decay towards zero (RMSprop's
    motivation).

    Reference: Duchi, Hazan & Singer (2011), "Adaptive Subgradient Methods for Online
    Learning and Stochastic Optimization", JMLR 12.

    Args:
        params: parameters or parameter groups (see :class:`~gradcraft.optim.Optimizer`).
        lr: learning rate γ (default 1e-2).
        lr_decay: η ≥ 0 (default 0).
        weight_decay: coupled L2 penalty λ ≥ 0 (default 0).
        initial_accumulator_value: τ ≥ 0, the starting value of the sum (default 0).
        eps: ε ≥ 0 (default 1e-10).
        maximize: ascend instead of descend.
        flatten_params: keep the group's parameters in one flat buffer (see Optimizer).

    State per parameter: ``step``, ``sum``.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
        flatten_params: bool = True,
    ) -> None:
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "maximize": maximize,
        }
        super().__init__(params, defaults, flatten_params=flatten_params)

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        for key in ("lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            group[key] = check_range(key, group[key], 0.0)
        group["maximize"] = bool(group["maximize"])

    def _ensure_state(self, group: dict[str, Any], p: Any, state: dict[str, Any]) -> None:
        if "step" not in state:
            state["step"] = 0
            state["sum"] = full_like(p.data, float(group["initial_accumulator_value"]))

    def _prepare(self, group: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        state["step"] += 1
        clr = float(group["lr"]) / (1.0 + (state["step"] - 1) * float(group["lr_decay"]))
        return {
            "negate": group["maximize"],
            "writes_grad": False,
            "l2": float(group["weight_decay"]),
            "clr": clr,
            "eps": float(group["eps"]),
        }

    def _kernel(self, c: dict[str, Any], p: Any, g: Any, s: dict[str, Any], t: list[Any]) -> None:
        xp = c["xp"]
        (tmp,) = t
        acc = s["sum"]
        xp.multiply(g, g, out=tmp)  # sum += g²
        xp.add(acc, tmp, out=acc)
        xp.sqrt(acc, out=tmp)  # θ −= γ̃ g / (√sum + ε)
        xp.add(tmp, c["eps"], out=tmp)
        xp.divide(g, tmp, out=tmp)
        xp.multiply(tmp, -c["clr"], out=tmp)
        xp.add(p, tmp, out=p)
