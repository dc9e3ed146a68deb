"""Rprop: resilient backpropagation, steps from gradient signs only."""

from __future__ import annotations

from typing import Any

from gradcraft.optim.optimizer import Optimizer, check_number, full_like, zeros_like

__all__ = ["Rprop"]


class Rprop(Optimizer):
    r"""Rprop (Riedmiller & Braun, 1993), PyTorch's ``torch.optim.Rprop``.

    The update, per parameter and coordinate, as PyTorch writes it::

        input: θ_0, f(θ), step sizes η_0 = lr, etas (η−, η+), step_sizes (Γ_min, Γ_max),
               maximize;   g_prev = 0
        for t = 1, 2, ...
            g_t = ∇f(θ_{t-1})                      (−∇f if maximize)
            if g_prev · g_t > 0:   η_t = min(η_{t-1} · η+, Γ_max)
            elif g_prev · g_t < 0: η_t = max(η_{t-1} · η−, Γ_min);  g_t = 0
            else:                  η_t = η_{t-1}
            θ_t = θ_{t-1} − η_t sign(g_t)
            g_prev = g_t

    Each coordinate has its own step size, grown while the gradient keeps its sign and shrunk
    (with the step skipped) when it flips — the magnitude of the gradient is ignored. Meant for
    full-batch training; with minibatches the sign flips from noise (RMSprop's motivation in
    the lectures). This is the "Rprop−" variant without weight backtracking.

    Reference: Riedmiller & Braun (1993), "A direct adaptive method for faster
    backpropagation learning: the RPROP algorithm", IEEE ICNN.

    Args:
        params: parameters or parameter groups (see :class:`~gradcraft.optim.Optimizer`).
        lr: initial step size η_0 (default 1e-2).
        etas: (η−, η+) with 0 < η− < 1 < η+ (default (0.5, 1.2)).
        step_sizes: (Γ_min, Γ_max), bounds of the step size (default (1e-6, 50)).
        maximize: ascend instead of descend.
        flatten_params: keep the group's parameters in one flat buffer (see Optimizer).

    State per parameter: ``step``, ``prev`` (the previous, possibly zeroed, gradient),
    ``step_size``.
    """

    _num_temps = 2
    _needs_mask = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        maximize: bool = False,
        flatten_params: bool = True,
    ) -> None:
        defaults = {"lr": lr, "etas": etas, "step_sizes": step_sizes, "maximize": maximize}
        super().__init__(params, defaults, flatten_params=flatten_params)

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        etas, sizes = group["etas"], group["step_sizes"]
        if not isinstance(etas, (tuple, list)) or len(etas) != 2:
            raise ValueError(f"Expected etas to be a pair (eta_minus, eta_plus). Received: etas={etas!r}")
        em, ep = check_number("etas[0]", etas[0]), check_number("etas[1]", etas[1])
        if not 0.0 < em < 1.0 < ep:
            raise ValueError(f"Expected 0 < etas[0] < 1 < etas[1]. Received: etas={tuple(etas)}")
        if not isinstance(sizes, (tuple, list)) or len(sizes) != 2:
            raise ValueError(
                f"Expected step_sizes to be a pair (min_step, max_step). Received: step_sizes={sizes!r}"
            )
        lo, hi = check_number("step_sizes[0]", sizes[0]), check_number("step_sizes[1]", sizes[1])
        if not 0.0 <= lo <= hi:
            raise ValueError(
                f"Expected 0 <= step_sizes[0] <= step_sizes[1]. Received: step_sizes={tuple(sizes)}"
            )
        group["etas"] = (em, ep)
        group["step_sizes"] = (lo, hi)
        group["maximize"] = bool(group["maximize"])

    def _ensure_state(self, group: dict[str, Any], p: Any, state: dict[str, Any]) -> None:
        if "step" not in state:
            state["step"] = 0
            state["prev"] = zeros_like(p.data)
            state["step_size"] = full_like(p.data, float(group["lr"]))

    def _prepare(self, group: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        state["step"] += 1
        em, ep = (float(e) for e in group["etas"])
        lo, hi = (float(x) for x in group["step_sizes"])
        return {"negate": group["maximize"], "l2": 0.0, "em": em, "ep": ep, "lo": lo, "hi": hi}

    def _kernel(self, c: dict[str, Any], p: Any, g: Any, s: dict[str, Any], t: list[Any]) -> None:
        xp, mask = c["xp"], c["mask"]
        prod, factor = t
        prev, size = s["prev"], s["step_size"]
        xp.multiply(g, prev, out=prod)
        factor[...] = 1.0
        xp.greater(prod, 0, out=mask)
        xp.copyto(factor, c["ep"], where=mask)
        xp.less(prod, 0, out=mask)
        xp.copyto(factor, c["em"], where=mask)
        xp.multiply(size, factor, out=size)  # η = clip(η · factor, Γ_min, Γ_max)
        xp.clip(size, c["lo"], c["hi"], out=size)
        xp.copyto(g, 0.0, where=mask)  # no step where the sign flipped
        xp.sign(g, out=prod)
        xp.multiply(prod, size, out=prod)
        xp.subtract(p, prod, out=p)
        prev[...] = g
