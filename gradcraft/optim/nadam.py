"""NAdam: Adam with Nesterov momentum."""

from __future__ import annotations

import math
from typing import Any

from gradcraft.optim.optimizer import Optimizer, check_betas, check_range, zeros_like

__all__ = ["NAdam"]


class NAdam(Optimizer):
    r"""NAdam (Dozat, 2016), PyTorch's ``torch.optim.NAdam``.

    The update, per parameter, as PyTorch writes it::

        input: lr γ, betas (β1, β2), params θ_0, objective f(θ), weight_decay λ,
               momentum_decay ψ, eps ε, decoupled_weight_decay, maximize;
               m_0 = 0, v_0 = 0, μ-product_0 = 1
        for t = 1, 2, ...
            g_t = ∇f(θ_{t-1})                      (−∇f if maximize)
            if λ ≠ 0:
                θ_{t-1} = θ_{t-1} (1 − γλ)          if decoupled_weight_decay
                g_t = g_t + λ θ_{t-1}              otherwise
            μ_t = β1 (1 − ½ · 0.96^{t ψ});   μ_{t+1} = β1 (1 − ½ · 0.96^{(t+1) ψ})
            m_t = β1 m_{t-1} + (1 − β1) g_t
            v_t = β2 v_{t-1} + (1 − β2) g_t²
            m̂_t = μ_{t+1} m_t / (1 − ∏_{i≤t+1} μ_i) + (1 − μ_t) g_t / (1 − ∏_{i≤t} μ_i)
            v̂_t = v_t / (1 − β2^t)
            θ_t = θ_{t-1} − γ m̂_t / (√v̂_t + ε)

    Dozat's idea in the lectures' terms: Nesterov's look-ahead applied to Adam — the step
    uses the momentum *after* the next update (μ_{t+1} m_t) plus the current gradient's
    share, each with its own bias correction; the warm-up schedule μ_t on β1 comes from the
    paper. Implementation: √(1 − β2^t) is folded into the two scalar factors and ε.

    Reference: Dozat (2016), "Incorporating Nesterov Momentum into Adam", ICLR workshop.

    Args:
        params: parameters or parameter groups (see :class:`~gradcraft.optim.Optimizer`).
        lr: learning rate γ (default 2e-3).
        betas: (β1, β2), each in [0, 1) (default (0.9, 0.999)).
        eps: ε ≥ 0 (default 1e-8).
        weight_decay: λ ≥ 0 (default 0), coupled L2 unless ``decoupled_weight_decay``.
        momentum_decay: ψ ≥ 0 (default 4e-3).
        decoupled_weight_decay: decay the weights directly, as AdamW (NAdamW).
        maximize: ascend instead of descend.
        flatten_params: keep the group's parameters in one flat buffer (see Optimizer).

    State per parameter: ``step``, ``mu_product``, ``exp_avg``, ``exp_avg_sq``.
    """

    _num_temps = 2

    def __init__(
        self,
        params: Any,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
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
            "momentum_decay": momentum_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults, flatten_params=flatten_params)

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        group["eps"] = check_range("eps", group["eps"], 0.0)
        group["betas"] = check_betas("betas", group["betas"])
        group["weight_decay"] = check_range("weight_decay", group["weight_decay"], 0.0)
        group["momentum_decay"] = check_range("momentum_decay", group["momentum_decay"], 0.0)
        group["decoupled_weight_decay"] = bool(group["decoupled_weight_decay"])
        group["maximize"] = bool(group["maximize"])

    def _ensure_state(self, group: dict[str, Any], p: Any, state: dict[str, Any]) -> None:
        if "step" not in state:
            state["step"] = 0
            state["mu_product"] = 1.0
            state["exp_avg"] = zeros_like(p.data)
            state["exp_avg_sq"] = zeros_like(p.data)

    def _prepare(self, group: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        state["step"] += 1
        t = state["step"]
        b1, b2 = (float(b) for b in group["betas"])
        lr, wd, psi = float(group["lr"]), float(group["weight_decay"]), float(group["momentum_decay"])
        decoupled = group["decoupled_weight_decay"]
        bc2_sqrt = math.sqrt(1.0 - b2**t)
        mu = b1 * (1.0 - 0.5 * (0.96 ** (t * psi)))
        mu_next = b1 * (1.0 - 0.5 * (0.96 ** ((t + 1) * psi)))
        mu_product = state["mu_product"] * mu
        state["mu_product"] = mu_product
        return {
            "negate": group["maximize"],
            "l2": 0.0 if decoupled else wd,
            "decay": 1.0 - lr * wd if decoupled and wd else None,
            "b1": b1,
            "b2": b2,
            "eps": float(group["eps"]) * bc2_sqrt,
            "cg": -lr * (1.0 - mu) / (1.0 - mu_product) * bc2_sqrt,
            "cm": -lr * mu_next / (1.0 - mu_product * mu_next) * bc2_sqrt,
        }

    def _kernel(self, c: dict[str, Any], p: Any, g: Any, s: dict[str, Any], t: list[Any]) -> None:
        xp = c["xp"]
        denom, tmp = t
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
        xp.sqrt(v, out=denom)  # √v + ε √(1 − β2^t)
        xp.add(denom, c["eps"], out=denom)
        xp.multiply(g, c["cg"], out=g)  # θ += (c_g g + c_m m) / denom
        xp.multiply(m, c["cm"], out=tmp)
        xp.add(g, tmp, out=g)
        xp.divide(g, denom, out=g)
        xp.add(p, g, out=p)
