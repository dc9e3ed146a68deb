"""ASGD: averaged stochastic gradient descent (Polyak-Ruppert averaging)."""

from __future__ import annotations

from typing import Any

from gradcraft.optim.optimizer import Optimizer, check_number, check_range, zeros_like

__all__ = ["ASGD"]


class ASGD(Optimizer):
    r"""Averaged SGD (Polyak & Juditsky, 1992), PyTorch's ``torch.optim.ASGD``.

    The update, per parameter, as PyTorch writes it::

        input: lr γ, params θ_0, objective f(θ), lambd λ, alpha α, t0, weight_decay w,
               maximize;   η_0 = γ, μ_0 = 1, ax_0 = 0
        for t = 1, 2, ...
            g_t = ∇f(θ_{t-1})                      (−∇f if maximize)
            if w ≠ 0:  g_t = g_t + w θ_{t-1}
            θ_t = θ_{t-1} (1 − λ η_{t-1}) − η_{t-1} g_t
            ax_t = θ_t                          if μ_{t-1} = 1
            ax_t = ax_{t-1} + μ_{t-1} (θ_t − ax_{t-1})   otherwise
            η_t = γ / (1 + λ γ t)^α
            μ_t = 1 / max(1, t − t0)

    ``ax`` (state ``ax``) is the running average of the iterates from step t0 on — the
    Polyak-Ruppert average the lectures recommend evaluating with ("Polyak averaging"); the
    model itself follows plain SGD with a decaying rate η_t and a small decay λ. Copy ``ax``
    into the model for evaluation.

    Reference: Polyak & Juditsky (1992), "Acceleration of Stochastic Approximation by
    Averaging", SIAM J. Control Optim. 30(4); step sizes from Bottou (2012), "Stochastic
    Gradient Descent Tricks".

    Args:
        params: parameters or parameter groups (see :class:`~gradcraft.optim.Optimizer`).
        lr: learning rate γ (default 1e-2).
        lambd: decay term λ ≥ 0 (default 1e-4).
        alpha: power α for the η update (default 0.75).
        t0: the step at which averaging starts (default 1e6).
        weight_decay: coupled L2 penalty w ≥ 0 (default 0).
        maximize: ascend instead of descend.
        flatten_params: keep the group's parameters in one flat buffer (see Optimizer).

    State per parameter: ``step``, ``eta``, ``mu``, ``ax``.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        flatten_params: bool = True,
    ) -> None:
        defaults = {
            "lr": lr,
            "lambd": lambd,
            "alpha": alpha,
            "t0": t0,
            "weight_decay": weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults, flatten_params=flatten_params)

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        group["lambd"] = check_range("lambd", group["lambd"], 0.0)
        group["alpha"] = check_number("alpha", group["alpha"])
        group["t0"] = check_number("t0", group["t0"])
        group["weight_decay"] = check_range("weight_decay", group["weight_decay"], 0.0)
        group["maximize"] = bool(group["maximize"])

    def _ensure_state(self, group: dict[str, Any], p: Any, state: dict[str, Any]) -> None:
        if "step" not in state:
            state["step"] = 0
            state["eta"] = float(group["lr"])
            state["mu"] = 1.0
            state["ax"] = zeros_like(p.data)

    def _prepare(self, group: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        state["step"] += 1
        t = state["step"]
        eta, mu = float(state["eta"]), float(state["mu"])
        lr, lambd = float(group["lr"]), float(group["lambd"])
        state["eta"] = lr / ((1.0 + lambd * lr * t) ** float(group["alpha"]))
        state["mu"] = 1.0 / max(1.0, t - float(group["t0"]))
        return {
            "negate": group["maximize"],
            "writes_grad": False,
            "l2": float(group["weight_decay"]),
            "eta": eta,
            "mu": mu,
            "shrink": 1.0 - lambd * eta,
        }

    def _kernel(self, c: dict[str, Any], p: Any, g: Any, s: dict[str, Any], t: list[Any]) -> None:
        xp = c["xp"]
        (tmp,) = t
        ax = s["ax"]
        xp.multiply(p, c["shrink"], out=p)  # θ = θ (1 − λη) − η g
        xp.multiply(g, -c["eta"], out=tmp)
        xp.add(p, tmp, out=p)
        if c["mu"] != 1.0:  # ax += μ (θ − ax)
            xp.subtract(p, ax, out=tmp)
            xp.multiply(tmp, c["mu"], out=tmp)
            xp.add(ax, tmp, out=ax)
        else:
            ax[...] = p
