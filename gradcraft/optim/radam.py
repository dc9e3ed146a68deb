"""RAdam: Adam with a rectified (variance-corrected) adaptive learning rate."""

from __future__ import annotations

import math
from typing import Any

from gradcraft.optim.optimizer import Optimizer, check_betas, check_range, zeros_like

__all__ = ["RAdam"]


class RAdam(Optimizer):
    r"""RAdam (Liu et al., 2020), PyTorch's ``torch.optim.RAdam``.

    The update, per parameter, as PyTorch writes it::

        input: lr γ, betas (β1, β2), params θ_0, objective f(θ), weight_decay λ, eps ε,
               decoupled_weight_decay, maximize;   m_0 = 0, v_0 = 0,
               ρ_∞ = 2 / (1 − β2) − 1
        for t = 1, 2, ...
            g_t = ∇f(θ_{t-1})                      (−∇f if maximize)
            if λ ≠ 0:
                θ_{t-1} = θ_{t-1} (1 − γλ)          if decoupled_weight_decay
                g_t = g_t + λ θ_{t-1}              otherwise
            m_t = β1 m_{t-1} + (1 − β1) g_t
            v_t = β2 v_{t-1} + (1 − β2) g_t²
            m̂_t = m_t / (1 − β1^t)
            ρ_t = ρ_∞ − 2 t β2^t / (1 − β2^t)
            if ρ_t > 5:
                l_t = √(1 − β2^t) / (√v_t + ε)
                r_t = √((ρ_t − 4)(ρ_t − 2) ρ_∞ / ((ρ_∞ − 4)(ρ_∞ − 2) ρ_t))
                θ_t = θ_{t-1} − γ m̂_t r_t l_t
            else:
                θ_t = θ_{t-1} − γ m̂_t               (SGD with momentum while v is unreliable)

    In the lectures' terms: the adaptive rate's variance is large in the first steps
    (few samples in v), which is why Adam needs warmup; RAdam multiplies it by the
    rectification r_t, an analytic warmup, and uses plain momentum until ρ_t > 5.

    Reference: Liu, Jiang, He, Chen, Liu, Gao & Han (2020), "On the Variance of the Adaptive
    Learning Rate and Beyond", ICLR.

    Args:
        params: parameters or parameter groups (see :class:`~gradcraft.optim.Optimizer`).
        lr: learning rate γ (default 1e-3).
        betas: (β1, β2), each in [0, 1) (default (0.9, 0.999)).
        eps: ε ≥ 0 (default 1e-8).
        weight_decay: λ ≥ 0 (default 0), coupled L2 unless ``decoupled_weight_decay``.
        decoupled_weight_decay: decay the weights directly, as AdamW.
        maximize: ascend instead of descend.
        flatten_params: keep the group's parameters in one flat buffer (see Optimizer).

    State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq``.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
        flatten_params: bool = True,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults, flatten_params=flatten_params)

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        group["eps"] = check_range("eps", group["eps"], 0.0)
        group["betas"] = check_betas("betas", group["betas"])
        group["weight_decay"] = check_range("weight_decay", group["weight_decay"], 0.0)
        group["decoupled_weight_decay"] = bool(group["decoupled_weight_decay"])
        group["maximize"] = bool(group["maximize"])

    def _ensure_state(self, group: dict[str, Any], p: Any, state: dict[str, Any]) -> None:
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = zeros_like(p.data)
            state["exp_avg_sq"] = zeros_like(p.data)

    def _prepare(self, group: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        state["step"] += 1
        t = state["step"]
        b1, b2 = (float(b) for b in group["betas"])
        lr, wd = float(group["lr"]), float(group["weight_decay"])
        decoupled = group["decoupled_weight_decay"]
        bc1 = 1.0 - b1**t
        bc2 = 1.0 - b2**t
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        rho_t = rho_inf - 2.0 * t * (b2**t) / bc2
        if rho_t > 5.0:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            scale = -lr * rect * math.sqrt(bc2) / bc1
        else:
            scale = None
        return {
            "negate": group["maximize"],
            "writes_grad": False,
            "l2": 0.0 if decoupled else wd,
            "decay": 1.0 - lr * wd if decoupled and wd else None,
            "b1": b1,
            "b2": b2,
            "eps": float(group["eps"]),
            "scale": scale,
            "plain": -lr / bc1,
        }

    def _kernel(self, c: dict[str, Any], p: Any, g: Any, s: dict[str, Any], t: list[Any]) -> None:
        xp = c["xp"]
        (tmp,) = t
        m, v = s["exp_avg"], s["exp_avg_sq"]
        if c["decay"] is not None:
            xp.multiply(p, c["decay"], out=p)
        xp.subtract(g, m, out=tmp)  # m += (1 − β1)(g − m)
        xp.multiply(tmp, 1.0 - c["b1"], out=tmp)
        xp.add(m, tmp, out=m)
        xp.multiply(v, c["b2"], out=v)  # v = β2 v + (1 − β2) g²
        xp.multiply(g, g, out=tmp)
        xp.multiply(tmp, 1.0 - c["b2"], out=tmp)
        xp.add(v, tmp, out=v)
        if c["scale"] is None:  # θ −= γ m̂
            xp.multiply(m, c["plain"], out=tmp)
        else:  # θ −= γ r_t √(1 − β2^t) / (1 − β1^t) · m / (√v + ε)
            xp.sqrt(v, out=tmp)
            xp.add(tmp, c["eps"], out=tmp)
            xp.divide(m, tmp, out=tmp)
            xp.multiply(tmp, c["scale"], out=tmp)
        xp.add(p, tmp, out=p)
