"""Adam and AdamW: adaptive moment estimation, with coupled or decoupled weight decay."""

from __future__ import annotations

import math
from typing import Any

from gradcraft.optim.optimizer import Optimizer, check_betas, check_range, zeros_like

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015), PyTorch's ``torch.optim.Adam``.

    The update, per parameter, as PyTorch writes it::

        input: lr γ, betas (β1, β2), params θ_0, objective f(θ), weight_decay λ, eps ε,
               amsgrad, maximize;   m_0 = 0, v_0 = 0, v̂max_0 = 0
        for t = 1, 2, ...
            g_t = ∇f(θ_{t-1})                      (−∇f if maximize)
            if λ ≠ 0:
                θ_{t-1} = θ_{t-1} (1 − γ λ)         if decoupled_weight_decay  (AdamW)
                g_t = g_t + λ θ_{t-1}              otherwise                  (coupled L2)
            m_t = β1 m_{t-1} + (1 − β1) g_t
            v_t = β2 v_{t-1} + (1 − β2) g_t²
            m̂_t = m_t / (1 − β1^t)
            v̂_t = v_t / (1 − β2^t);   with amsgrad: v̂max_t = max(v̂max_{t-1}, v_t), v̂_t = v̂max_t / (1 − β2^t)
            θ_t = θ_{t-1} − γ m̂_t / (√v̂_t + ε)

    The lectures (cs231n) write it with ``dx`` the gradient::

        m = beta1*m + (1-beta1)*dx
        mt = m / (1-beta1**t)
        v = beta2*v + (1-beta2)*(dx**2)
        vt = v / (1-beta2**t)
        x += - learning_rate * mt / (np.sqrt(vt) + eps)

    which is the same rule. Implementation: the bias corrections are folded into two
    scalars, ``θ −= (γ √(1−β2^t) / (1−β1^t)) · m / (√v + ε √(1−β2^t))``, which is the formula
    above rearranged (one pass fewer over the arrays).

    Reference: Kingma & Ba (2015), "Adam: A Method for Stochastic Optimization"; AMSGrad:
    Reddi, Kale & Kumar (2018), "On the Convergence of Adam and Beyond".

    Args:
        params: parameters or parameter groups (see :class:`~gradcraft.optim.Optimizer`).
        lr: learning rate γ (default 1e-3).
        betas: (β1, β2), each in [0, 1) (default (0.9, 0.999)).
        eps: ε added to the denominator (default 1e-8).
        weight_decay: λ ≥ 0 (default 0): coupled L2 (added to the gradient), or decoupled
            (``θ *= 1 − γλ``) with ``decoupled_weight_decay=True`` — that is :class:`AdamW`.
        amsgrad: use the running maximum of the second moment (AMSGrad).
        maximize: ascend instead of descend.
        decoupled_weight_decay: apply weight decay as in AdamW.
        flatten_params: keep the group's parameters in one flat buffer (see Optimizer).

    State per parameter: ``step``, ``exp_avg`` (m), ``exp_avg_sq`` (v) and, with amsgrad,
    ``max_exp_avg_sq``.
    """

    _num_temps = 1

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        flatten_params: bool = True,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults, flatten_params=flatten_params)

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        group["eps"] = check_range("eps", group["eps"], 0.0)
        group["betas"] = check_betas("betas", group["betas"])
        group["weight_decay"] = check_range("weight_decay", group["weight_decay"], 0.0)
        for key in ("amsgrad", "maximize", "decoupled_weight_decay"):
            group[key] = bool(group[key])

    def _ensure_state(self, group: dict[str, Any], p: Any, state: dict[str, Any]) -> None:
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = zeros_like(p.data)
            state["exp_avg_sq"] = zeros_like(p.data)
        if group["amsgrad"] and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = zeros_like(p.data)

    def _prepare(self, group: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        state["step"] += 1
        t = state["step"]
        b1, b2 = (float(b) for b in group["betas"])
        lr, wd = float(group["lr"]), float(group["weight_decay"])
        decoupled = group["decoupled_weight_decay"]
        bc1 = 1.0 - b1**t
        bc2_sqrt = math.sqrt(1.0 - b2**t)
        return {
            "negate": group["maximize"],
            "writes_grad": False,
            "l2": 0.0 if decoupled else wd,
            "decay": 1.0 - lr * wd if decoupled and wd else None,
            "b1": b1,
            "b2": b2,
            "eps": float(group["eps"]) * bc2_sqrt,
            "step_size": -lr * bc2_sqrt / bc1,
            "amsgrad": group["amsgrad"],
        }

    def _compiled_rule(self, kernels: Any, c: dict[str, Any], dtype: Any) -> Any:
        f = dtype.type
        amsgrad = c["amsgrad"]
        scalars = (
            f(1.0 if c["decay"] is None else c["decay"]),
            f(1.0 - c["b1"]),
            f(c["b2"]),
            f(1.0 - c["b2"]),
            f(c["eps"]),
            f(c["step_size"]),
        )
        sign, l2 = self._folding(c, dtype)

        def rule(p: Any, grad: Any, s: dict[str, Any]) -> None:
            v = s["exp_avg_sq"]
            vmax = s["max_exp_avg_sq"] if amsgrad else v
            kernels.adam(p, grad, sign, l2, s["exp_avg"], v, vmax, amsgrad, *scalars)

        return rule

    def _kernel(self, c: dict[str, Any], p: Any, g: Any, s: dict[str, Any], t: list[Any]) -> None:
        xp = c["xp"]
        (tmp,) = t
        m, v = s["exp_avg"], s["exp_avg_sq"]
        if c["decay"] is not None:  # AdamW: θ *= 1 − γλ
            xp.multiply(p, c["decay"], out=p)
        # m = β1 m + (1 − β1) g, as m += (1 − β1)(g − m)
        xp.subtract(g, m, out=tmp)
        xp.multiply(tmp, 1.0 - c["b1"], out=tmp)
        xp.add(m, tmp, out=m)
        # v = β2 v + (1 − β2) g²
        xp.multiply(v, c["b2"], out=v)
        xp.multiply(g, g, out=tmp)
        xp.multiply(tmp, 1.0 - c["b2"], out=tmp)
        xp.add(v, tmp, out=v)
        if c["amsgrad"]:
            vmax = s["max_exp_avg_sq"]
            xp.maximum(vmax, v, out=vmax)
            v = vmax
        # θ += step_size · m / (√v + ε')
        xp.sqrt(v, out=tmp)
        xp.add(tmp, c["eps"], out=tmp)
        xp.divide(m, tmp, out=tmp)
        xp.multiply(tmp, c["step_size"], out=tmp)
        xp.add(p, tmp, out=p)


class AdamW(Adam):
    r"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, 2019), PyTorch's
    ``torch.optim.AdamW``.

    Same as :class:`Adam` except that the weight decay shrinks the weights directly instead
    of being added to the gradient (where Adam's per-coordinate scaling would weaken it for
    coordinates with large gradients)::

        θ_{t-1} = θ_{t-1} (1 − γ λ)             (decoupled weight decay)
        m_t = β1 m_{t-1} + (1 − β1) g_t;   v_t = β2 v_{t-1} + (1 − β2) g_t²
        θ_t = θ_{t-1} − γ m̂_t / (√v̂_t + ε)

    In the lectures' terms: "L2 regularization is not weight decay for Adam"; AdamW restores
    plain weight decay ``w ← w − ηλw`` next to the adaptive step.

    Reference: Loshchilov & Hutter (2019), "Decoupled Weight Decay Regularization".

    Args:
        params, lr, betas, eps, amsgrad, maximize, flatten_params: as in :class:`Adam`.
        weight_decay: decoupled decay λ ≥ 0 (default 1e-2).
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        flatten_params: bool = True,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
            flatten_params=flatten_params,
        )
