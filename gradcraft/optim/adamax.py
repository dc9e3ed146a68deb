"""Adamax: Adam with the infinity norm in place of the second moment."""

from __future__ import annotations

from typing import Any

from gradcraft.optim.optimizer import Optimizer, check_betas, check_range, zeros_like

__all__ = ["Adamax"]


class Adamax(Optimizer):
    r"""Adamax (Kingma & Ba, 2015, section 7.1), PyTorch's ``torch.optim.Adamax``.

    The update, per parameter, as PyTorch writes it::

        input: lr γ, betas (β1, β2), params θ_0, objective f(θ), weight_decay λ, eps ε,
               maximize;   m_0 = 0, u_0 = 0
        for t = 1, 2, ...
            g_t = ∇f(θ_{t-1})                      (−∇f if maximize)
            if λ ≠ 0:  g_t = g_t + λ θ_{t-1}
            m_t = β1 m_{t-1} + (1 − β1) g_t
            u_t = max(β2 u_{t-1}, |g_t| + ε)
            θ_t = θ_{t-1} − γ m_t / ((1 − β1^t) u_t)

    The paper writes ``u_t = max(β2 · u_{t−1}, |g_t|)`` (the limit p → ∞ of Adam's L^p
    norm; PyTorch adds ε inside the max so that u never vanishes) and ``θ_t = θ_{t−1} −
    (α / (1 − β1^t)) · m_t / u_t``; u needs no bias correction.

    Reference: Kingma & Ba (2015), "Adam: A Method for Stochastic Optimization", §7.1.

    Args:
        params: parameters or parameter groups (see :class:`~gradcraft.optim.Optimizer`).
        lr: learning rate γ (default 2e-3).
        betas: (β1, β2), each in [0, 1) (default (0.9, 0.999)).
        eps: ε ≥ 0 (default 1e-8).
        weight_decay: coupled L2 penalty λ ≥ 0 (default 0).
        maximize: ascend instead of descend.
        flatten_params: keep the group's parameters in one flat buffer (see Optimizer).

    State per parameter: ``step``, ``exp_avg`` (m), ``exp_inf`` (u).
    """

    def __init__(
        self,
        params: Any,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        flatten_params: bool = True,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "maximize": maximize}
        super().__init__(params, defaults, flatten_params=flatten_params)

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        group["eps"] = check_range("eps", group["eps"], 0.0)
        group["betas"] = check_betas("betas", group["betas"])
        group["weight_decay"] = check_range("weight_decay", group["weight_decay"], 0.0)
        group["maximize"] = bool(group["maximize"])

    def _ensure_state(self, group: dict[str, Any], p: Any, state: dict[str, Any]) -> None:
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = zeros_like(p.data)
            state["exp_inf"] = zeros_like(p.data)

    def _prepare(self, group: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        state["step"] += 1
        b1, b2 = (float(b) for b in group["betas"])
        return {
            "negate": group["maximize"],
            "writes_grad": False,
            "l2": float(group["weight_decay"]),
            "b1": b1,
            "b2": b2,
            "eps": float(group["eps"]),
            "clr": float(group["lr"]) / (1.0 - b1 ** state["step"]),
        }

    def _kernel(self, c: dict[str, Any], p: Any, g: Any, s: dict[str, Any], t: list[Any]) -> None:
        xp = c["xp"]
        (tmp,) = t
        m, u = s["exp_avg"], s["exp_inf"]
        xp.subtract(g, m, out=tmp)  # m += (1 − β1)(g − m)
        xp.multiply(tmp, 1.0 - c["b1"], out=tmp)
        xp.add(m, tmp, out=m)
        xp.abs(g, out=tmp)  # u = max(β2 u, |g| + ε)
        xp.add(tmp, c["eps"], out=tmp)
        xp.multiply(u, c["b2"], out=u)
        xp.maximum(u, tmp, out=u)
        xp.divide(m, u, out=tmp)  # θ −= γ / (1 − β1^t) · m / u
        xp.multiply(tmp, -c["clr"], out=tmp)
        xp.add(p, tmp, out=p)
