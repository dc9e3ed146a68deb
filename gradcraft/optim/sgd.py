"""Stochastic gradient descent, with (Nesterov) momentum, dampening and weight decay."""

from __future__ import annotations

from typing import Any, Literal

from gradcraft.optim.optimizer import Optimizer, check_range, zeros_like

__all__ = ["SGD"]

_FORMS = ("pytorch", "lecture")


class SGD(Optimizer):
    r"""Stochastic gradient descent (optionally with momentum), PyTorch's ``torch.optim.SGD``.

    The update, per parameter, as PyTorch writes it (``momentum_form="pytorch"``)::

        input: lr γ, params θ_0, objective f(θ), weight_decay λ, momentum μ,
               dampening τ, nesterov, maximize
        for t = 1, 2, ...
            g_t = ∇f(θ_{t-1})                      (−∇f if maximize)
            if λ ≠ 0:  g_t = g_t + λ θ_{t-1}       (coupled L2 weight decay)
            if μ ≠ 0:
                b_t = g_t                 if t = 1
                b_t = μ b_{t-1} + (1 − τ) g_t   otherwise
                g_t = g_t + μ b_t         if nesterov   else   g_t = b_t
            θ_t = θ_{t-1} − γ g_t

    The lectures (cs231n, Goodfellow et al. §8.3.2) write momentum in *velocity form*, with
    the learning rate inside the velocity (``momentum_form="lecture"``, state ``velocity``)::

        v = μ v − ε (1 − τ) ∇f(x)        (τ = 0 in the lectures; v = −ε ∇f(x) on the first step)
        x = x + v
        Nesterov:  x = x + μ v − ε ∇f(x)      (cs231n: x += −μ v_prev + (1 + μ) v)

    With a constant learning rate the two forms give the same trajectory: ``v = −γ b``. They
    differ when the learning rate changes (a schedule, warmup): the PyTorch form applies the
    new rate to the whole buffer at once, the velocity form only to new gradients (the old
    velocity keeps the old rate and decays with μ).

    References: Robbins & Monro (1951), "A stochastic approximation method"; Polyak (1964),
    "Some methods of speeding up the convergence of iteration methods" (momentum); Sutskever,
    Martens, Dahl & Hinton (2013), "On the importance of initialization and momentum in deep
    learning" (Nesterov momentum for deep nets).

    Args:
        params: parameters or parameter groups (see :class:`~gradcraft.optim.Optimizer`).
        lr: learning rate γ (default 1e-3).
        momentum: momentum factor μ ≥ 0 (default 0).
        dampening: dampening τ of the gradient added to the buffer (default 0).
        weight_decay: coupled L2 penalty λ ≥ 0 added to the gradient (default 0).
        nesterov: Nesterov momentum; needs ``momentum > 0`` and ``dampening = 0``.
        maximize: ascend instead of descend.
        momentum_form: ``"pytorch"`` (default) or ``"lecture"`` (velocity form, above).
        flatten_params: keep the group's parameters in one flat buffer (see Optimizer).

    State per parameter: ``step``; ``momentum_buffer`` (PyTorch form) or ``velocity``
    (lecture form) when ``momentum > 0``. A buffer created after the first step (momentum
    switched on later) starts from zero.

    Example::

        opt = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
        opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        momentum_form: Literal["pytorch", "lecture"] = "pytorch",
        flatten_params: bool = True,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "momentum_form": momentum_form,
        }
        super().__init__(params, defaults, flatten_params=flatten_params)

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        group["momentum"] = check_range("momentum", group["momentum"], 0.0)
        group["dampening"] = check_range("dampening", group["dampening"], high=1.0)
        group["weight_decay"] = check_range("weight_decay", group["weight_decay"], 0.0)
        group["nesterov"] = bool(group["nesterov"])
        group["maximize"] = bool(group["maximize"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "Expected momentum > 0 and dampening = 0 for Nesterov momentum. "
                f"Received: momentum={group['momentum']:g}, dampening={group['dampening']:g}"
            )
        if group["momentum_form"] not in _FORMS:
            raise ValueError(
                f"Expected momentum_form to be one of {_FORMS}. "
                f"Received: momentum_form={group['momentum_form']!r}"
            )

    def _buffer_name(self, group: dict[str, Any]) -> str:
        return "velocity" if group["momentum_form"] == "lecture" else "momentum_buffer"

    def _ensure_state(self, group: dict[str, Any], p: Any, state: dict[str, Any]) -> None:
        if "step" not in state:
            state["step"] = 0
        if group["momentum"] != 0:
            name = self._buffer_name(group)
            if name not in state:
                state[name] = zeros_like(p.data)

    def _prepare(self, group: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        first = state["step"] == 0
        state["step"] += 1
        return {
            "negate": group["maximize"],
            "writes_grad": group["nesterov"] and group["momentum_form"] == "pytorch",
            "l2": float(group["weight_decay"]),
            "lr": float(group["lr"]),
            "mu": float(group["momentum"]),
            "damp": float(group["dampening"]),
            "nesterov": group["nesterov"],
            "first": first,
            "buf": self._buffer_name(group) if group["momentum"] != 0 else None,
            "lecture": group["momentum_form"] == "lecture",
        }

    def _compiled_rule(self, kernels: Any, c: dict[str, Any], dtype: Any) -> Any:
        name = c["buf"]
        if name is None or c["lecture"]:  # plain SGD (two passes) and the lecture form: NumPy rule
            return None
        f = dtype.type
        args = (f(c["lr"]), f(c["mu"]), f(1.0 - c["damp"]), c["nesterov"], c["first"])

        sign, l2 = self._folding(c, dtype)

        def rule(p: Any, grad: Any, s: dict[str, Any]) -> None:
            kernels.sgd_momentum(p, grad, sign, l2, s[name], *args)

        return rule

    def _kernel(self, c: dict[str, Any], p: Any, g: Any, s: dict[str, Any], t: list[Any]) -> None:
        xp, lr, mu = c["xp"], c["lr"], c["mu"]
        (tmp,) = t
        name = c["buf"]
        if name is None:  # plain SGD: θ -= γ g
            xp.multiply(g, -lr, out=tmp)
            xp.add(p, tmp, out=p)
            return
        buf = s[name]
        if c["lecture"]:
            # v = μ v − γ (1 − τ) g   (v = −γ g on the first step);   x += v  or  x += μ v − γ g
            if c["first"]:
                xp.multiply(g, -lr, out=buf)
            else:
                xp.multiply(buf, mu, out=buf)
                xp.multiply(g, -lr * (1.0 - c["damp"]), out=tmp)
                xp.add(buf, tmp, out=buf)
            if c["nesterov"]:
                xp.multiply(buf, mu, out=tmp)
                xp.add(p, tmp, out=p)
                xp.multiply(g, -lr, out=tmp)
                xp.add(p, tmp, out=p)
            else:
                xp.add(p, buf, out=p)
            return
        # b = μ b + (1 − τ) g   (b = g on the first step)
        if c["first"]:
            buf[...] = g
        else:
            xp.multiply(buf, mu, out=buf)
            if c["damp"]:
                xp.multiply(g, 1.0 - c["damp"], out=tmp)
                xp.add(buf, tmp, out=buf)
            else:
                xp.add(buf, g, out=buf)
        if c["nesterov"]:  # g = g + μ b
            xp.multiply(buf, mu, out=tmp)
            xp.add(g, tmp, out=g)
            step = g
        else:
            step = buf
        xp.multiply(step, -lr, out=tmp)
        xp.add(p, tmp, out=p)
