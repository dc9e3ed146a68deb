"""Adadelta: step sizes from the ratio of running averages of updates and gradients."""

from __future__ import annotations

from typing import Any

from gradcraft.optim.optimizer import Optimizer, check_range, zeros_like

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    r"""Adadelta (Zeiler, 2012), PyTorch's ``torch.optim.Adadelta``.

    The update, per parameter, as PyTorch writes it::

        input: lr γ, params θ_0, objective f(θ), rho ρ, eps ε, weight_decay λ, maximize;
               v_0 = 0 (square avg), u_0 = 0 (accumulated update)
        for t = 1, 2, ...
            g_t = ∇f(θ_{t-1})                      (−∇f if maximize)
            if λ ≠ 0:  g_t = g_t + λ θ_{t-1}
            v_t = ρ v_{t-1} + (1 − ρ) g_t²
            Δx_t = √(u_{t-1} + ε) / √(v_t + ε) · g_t
            u_t = ρ u_{t-1} + (1 − ρ) Δx_t²
            θ_t = θ_{t-1} − γ Δx_t

    Zeiler's paper (and the lectures' summary) writes ``Δx_t = − RMS[Δx]_{t−1} / RMS[g]_t ·
    g_t``, ``x_{t+1} = x_t + Δx_t`` with ``RMS[y] = √(E[y²] + ε)``: the ratio of the two
    running RMS values gives the step "units" of the parameter, so no learning rate is needed
    (γ = 1, PyTorch's default, is the paper's rule).

    Reference: Zeiler (2012), "ADADELTA: An Adaptive Learning Rate Method".

    Args:
        params: parameters or parameter groups (see :class:`~gradcraft.optim.Optimizer`).
        lr: γ, scales Δx before it is applied (default 1.0).
        rho: ρ in [0, 1], the running averages' decay (default 0.9).
        eps: ε ≥ 0 inside the square roots (default 1e-6).
        weight_decay: coupled L2 penalty λ ≥ 0 (default 0).
        maximize: ascend instead of descend.
        flatten_params: keep the group's parameters in one flat buffer (see Optimizer).

    State per parameter: ``step``, ``square_avg`` (v), ``acc_delta`` (u).
    """

    _num_temps = 2

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        flatten_params: bool = True,
    ) -> None:
        defaults = {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay, "maximize": maximize}
        super().__init__(params, defaults, flatten_params=flatten_params)

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        group["rho"] = check_range("rho", group["rho"], 0.0, 1.0)
        group["eps"] = check_range("eps", group["eps"], 0.0)
        group["weight_decay"] = check_range("weight_decay", group["weight_decay"], 0.0)
        group["maximize"] = bool(group["maximize"])

    def _ensure_state(self, group: dict[str, Any], p: Any, state: dict[str, Any]) -> None:
        if "step" not in state:
            state["step"] = 0
            state["square_avg"] = zeros_like(p.data)
            state["acc_delta"] = zeros_like(p.data)

    def _prepare(self, group: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        state["step"] += 1
        return {
            "negate": group["maximize"],
            "writes_grad": False,
            "l2": float(group["weight_decay"]),
            "lr": float(group["lr"]),
            "rho": float(group["rho"]),
            "eps": float(group["eps"]),
        }

    def _kernel(self, c: dict[str, Any], p: Any, g: Any, s: dict[str, Any], t: list[Any]) -> None:
        xp, rho, eps = c["xp"], c["rho"], c["eps"]
        std, delta = t
        sq, acc = s["square_avg"], s["acc_delta"]
        xp.multiply(sq, rho, out=sq)  # v = ρ v + (1 − ρ) g²
        xp.multiply(g, g, out=std)
        xp.multiply(std, 1.0 - rho, out=std)
        xp.add(sq, std, out=sq)
        xp.add(sq, eps, out=std)  # √(v + ε)
        xp.sqrt(std, out=std)
        xp.add(acc, eps, out=delta)  # Δx = √(u + ε) / √(v + ε) · g
        xp.sqrt(delta, out=delta)
        xp.divide(delta, std, out=delta)
        xp.multiply(delta, g, out=delta)
        xp.multiply(acc, rho, out=acc)  # u = ρ u + (1 − ρ) Δx²
        xp.multiply(delta, delta, out=std)
        xp.multiply(std, 1.0 - rho, out=std)
        xp.add(acc, std, out=acc)
        xp.multiply(delta, -c["lr"], out=delta)
        xp.add(p, delta, out=p)
