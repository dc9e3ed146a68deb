"""RMSprop: a leaky running average of squared gradients scales each coordinate's step."""

from __future__ import annotations

from typing import Any

from gradcraft.optim.optimizer import Optimizer, check_range, zeros_like

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop (Hinton, 2012), PyTorch's ``torch.optim.RMSprop``.

    The update, per parameter, as PyTorch writes it::

        input: lr γ, alpha α, params θ_0, objective f(θ), eps ε, weight_decay λ,
               momentum μ, centered, maximize;   v_0 = 0, b_0 = 0, g^ave_0 = 0
        for t = 1, 2, ...
            g_t = ∇f(θ_{t-1})                      (−∇f if maximize)
            if λ ≠ 0:  g_t = g_t + λ θ_{t-1}
            v_t = α v_{t-1} + (1 − α) g_t²
            ṽ_t = v_t
            if centered:
                g^ave_t = α g^ave_{t-1} + (1 − α) g_t
                ṽ_t = ṽ_t − (g^ave_t)²
            if μ > 0:
                b_t = μ b_{t-1} + g_t / (√ṽ_t + ε)
                θ_t = θ_{t-1} − γ b_t
            else:
                θ_t = θ_{t-1} − γ g_t / (√ṽ_t + ε)

    The lectures (cs231n) write it as::

        cache = decay_rate * cache + (1 - decay_rate) * dx**2
        x += - learning_rate * dx / (np.sqrt(cache) + eps)

    the same rule with ``decay_rate`` = α and ``cache`` = v (no momentum, not centered).
    Unlike Adagrad's sum, the leaky average forgets old gradients, so the step size does not
    decay to zero. ``centered`` divides by an estimate of the gradient's standard deviation
    instead of its root mean square (Graves, 2013).

    References: Hinton, Srivastava & Swersky (2012), Neural Networks for Machine Learning,
    lecture 6e; Graves (2013), "Generating Sequences With Recurrent Neural Networks".

    Args:
        params: parameters or parameter groups (see :class:`~gradcraft.optim.Optimizer`).
        lr: learning rate γ (default 1e-2).
        alpha: smoothing constant α ≥ 0 (default 0.99).
        eps: ε ≥ 0 (default 1e-8).
        weight_decay: coupled L2 penalty λ ≥ 0 (default 0).
        momentum: μ ≥ 0 (default 0).
        centered: normalise by the centred second moment (an estimate of the variance).
        maximize: ascend instead of descend.
        flatten_params: keep the group's parameters in one flat buffer (see Optimizer).

    State per parameter: ``step``, ``square_avg``, and ``momentum_buffer`` (μ > 0),
    ``grad_avg`` (centered).
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
        flatten_params: bool = True,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "alpha": alpha,
            "eps": eps,
            "centered": centered,
            "weight_decay": weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults, flatten_params=flatten_params)

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        for key in ("eps", "momentum", "weight_decay", "alpha"):
            group[key] = check_range(key, group[key], 0.0)
        group["centered"] = bool(group["centered"])
        group["maximize"] = bool(group["maximize"])

    def _ensure_state(self, group: dict[str, Any], p: Any, state: dict[str, Any]) -> None:
        if "step" not in state:
            state["step"] = 0
            state["square_avg"] = zeros_like(p.data)
        if group["momentum"] > 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = zeros_like(p.data)
        if group["centered"] and "grad_avg" not in state:
            state["grad_avg"] = zeros_like(p.data)

    def _prepare(self, group: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        state["step"] += 1
        return {
            "negate": group["maximize"],
            "writes_grad": False,
            "l2": float(group["weight_decay"]),
            "lr": float(group["lr"]),
            "alpha": float(group["alpha"]),
            "eps": float(group["eps"]),
            "mu": float(group["momentum"]),
            "centered": group["centered"],
        }

    def _kernel(self, c: dict[str, Any], p: Any, g: Any, s: dict[str, Any], t: list[Any]) -> None:
        xp, alpha = c["xp"], c["alpha"]
        (tmp,) = t
        sq = s["square_avg"]
        xp.multiply(sq, alpha, out=sq)  # v = α v + (1 − α) g²
        xp.multiply(g, g, out=tmp)
        xp.multiply(tmp, 1.0 - alpha, out=tmp)
        xp.add(sq, tmp, out=sq)
        if c["centered"]:
            ga = s["grad_avg"]  # g_ave += (1 − α)(g − g_ave);  ṽ = v − g_ave²
            xp.subtract(g, ga, out=tmp)
            xp.multiply(tmp, 1.0 - alpha, out=tmp)
            xp.add(ga, tmp, out=ga)
            xp.multiply(ga, ga, out=tmp)
            xp.subtract(sq, tmp, out=tmp)
            xp.sqrt(tmp, out=tmp)
        else:
            xp.sqrt(sq, out=tmp)
        xp.add(tmp, c["eps"], out=tmp)
        xp.divide(g, tmp, out=tmp)  # g / (√ṽ + ε)
        if c["mu"] > 0:
            buf = s["momentum_buffer"]
            xp.multiply(buf, c["mu"], out=buf)
            xp.add(buf, tmp, out=buf)
            xp.multiply(buf, -c["lr"], out=tmp)
        else:
            xp.multiply(tmp, -c["lr"], out=tmp)
        xp.add(p, tmp, out=p)
