"""L-BFGS: limited-memory quasi-Newton steps, with an optional strong-Wolfe line search."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from gradcraft import backend
from gradcraft.autograd.grad_mode import enable_grad, no_grad
from gradcraft.optim.optimizer import Optimizer, check_int, check_range

__all__ = ["LBFGS"]


def _cubic_interpolate(
    x1: float,
    f1: float,
    g1: float,
    x2: float,
    f2: float,
    g2: float,
    bounds: tuple[float, float] | None = None,
) -> float:
    """Minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2), clipped to ``bounds``
    (Nocedal & Wright, eq. 3.59)."""
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def _strong_wolfe(
    obj_func: Callable[[float], tuple[float, Any]],
    t: float,
    d: Any,
    f: float,
    g: Any,
    gtd: float,
    c1: float = 1e-4,
    c2: float = 0.9,
    tolerance_change: float = 1e-9,
    max_ls: int = 25,
) -> tuple[float, Any, float, int]:
    """Line search along ``d`` for a step ``t`` satisfying the strong Wolfe conditions
    (sufficient decrease ``f(t) ≤ f + c1 t gtd`` and curvature ``|g(t)·d| ≤ −c2 gtd``):
    bracketing, then zoom by cubic interpolation (Nocedal & Wright, Algorithms 3.5-3.6;
    minFunc's ``WolfeLineSearch``). Returns ``(f_new, g_new, t, evaluations)``."""
    xp = backend.get_array_module(d)
    d_norm = float(xp.abs(d).max())
    g = g.copy()
    f_new, g_new = obj_func(t)
    ls_func_evals = 1
    gtd_new = float(xp.dot(g_new, d))

    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    bracket: list[float] = []
    bracket_f: list[float] = []
    bracket_g: list[Any] = []
    bracket_gtd: list[float] = []
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        # extrapolate
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new.copy(), gtd_new
        f_new, g_new = obj_func(t)
        ls_func_evals += 1
        gtd_new = float(xp.dot(g_new, d))
        ls_iter += 1

    if ls_iter == max_ls:  # reached the maximum number of iterations
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]

    # zoom: shrink the bracket until a point satisfies the Wolfe conditions
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(
            bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1]
        )
        # keep away from the bracket's ends unless progress was already insufficient
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                t = (
                    max(bracket) - eps
                    if abs(t - max(bracket)) < abs(t - min(bracket))
                    else min(bracket) + eps
                )
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(t)
        ls_func_evals += 1
        gtd_new = float(xp.dot(g_new, d))
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new.copy(), gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos], bracket_gtd[high_pos] = bracket_g[low_pos], bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new.copy(), gtd_new

    t = bracket[low_pos]
    return bracket_f[low_pos], bracket_g[low_pos], t, ls_func_evals


class LBFGS(Optimizer):
    r"""L-BFGS (Liu & Nocedal, 1989), PyTorch's ``torch.optim.LBFGS`` (after minFunc).

    Every ``step(closure)`` runs up to ``max_iter`` quasi-Newton iterations on the flattened
    parameter vector θ, re-evaluating the loss through ``closure``::

        g = ∇f(θ);  stop if max|g| ≤ tolerance_grad
        repeat up to max_iter times:
            if first iteration:  d = −g,  H_0 = 1
            else:
                s = t d_prev,  y = g − g_prev;   if yᵀs > 1e-10: remember (s, y), keep the
                last history_size pairs, H_0 = yᵀs / yᵀy
                d = −H g by the two-loop recursion (Nocedal & Wright, Algorithm 7.4)
            t = lr · min(1, 1 / Σ|g|) on the very first iteration, lr afterwards
            stop if gᵀd > −tolerance_change (not a descent direction)
            θ = θ + t d, with t from a strong-Wolfe line search if line_search_fn="strong_wolfe"
            stop when the evaluations reach max_eval, max|g| ≤ tolerance_grad,
            max|t d| ≤ tolerance_change or |f − f_prev| < tolerance_change

    The lectures' view: second-order methods use curvature (Newton: x −= H⁻¹∇f) and need no
    learning rate, but the Hessian is too large for deep nets; L-BFGS keeps only the last m
    (s, y) pairs to apply an approximate inverse Hessian in O(m n). It works best in full
    batch: it does not handle minibatch noise well.

    References: Liu & Nocedal (1989), "On the limited memory BFGS method for large scale
    optimization", Math. Programming 45; Nocedal & Wright (2006), Numerical Optimization,
    ch. 3 and 7.

    Args:
        params: the parameters (one group only).
        lr: step length scale (default 1).
        max_iter: iterations per ``step()`` (default 20).
        max_eval: closure evaluations per ``step()`` (default ``max_iter * 5 // 4``).
        tolerance_grad: stop when the gradient's max-norm is below it (default 1e-7).
        tolerance_change: stop when the step or loss change is below it (default 1e-9).
        history_size: number of (s, y) pairs kept (default 100).
        line_search_fn: ``None`` (fixed step ``lr``) or ``"strong_wolfe"``.
        flatten_params: keep the parameters in one flat buffer (see Optimizer).

    State (kept under the first parameter, as PyTorch does): ``func_evals``, ``n_iter``,
    ``d``, ``t``, ``old_dirs``, ``old_stps``, ``ro``, ``H_diag``, ``prev_flat_grad``,
    ``prev_loss``, ``al``.

    Example::

        opt = LBFGS(model.parameters(), line_search_fn="strong_wolfe")
        def closure():
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss
        opt.step(closure)
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
        *,
        flatten_params: bool = True,
    ) -> None:
        max_iter = check_int("max_iter", max_iter, 1)
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = {
            "lr": lr,
            "max_iter": max_iter,
            "max_eval": max_eval,
            "tolerance_grad": tolerance_grad,
            "tolerance_change": tolerance_change,
            "history_size": history_size,
            "line_search_fn": line_search_fn,
        }
        super().__init__(params, defaults, flatten_params=flatten_params)

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        group["max_iter"] = check_int("max_iter", group["max_iter"], 1)
        group["max_eval"] = check_int("max_eval", group["max_eval"], 1)
        group["history_size"] = check_int("history_size", group["history_size"], 1)
        group["tolerance_grad"] = check_range("tolerance_grad", group["tolerance_grad"], 0.0)
        group["tolerance_change"] = check_range("tolerance_change", group["tolerance_change"], 0.0)
        if group["line_search_fn"] not in (None, "strong_wolfe"):
            raise ValueError(
                "Expected line_search_fn to be None or 'strong_wolfe'. "
                f"Received: line_search_fn={group['line_search_fn']!r}"
            )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if self.param_groups:
            raise ValueError("Expected one parameter group: LBFGS does not support per-parameter options.")
        super().add_param_group(param_group)

    # ------------------------------------------------------------------ flat vectors
    def _gather_flat_grad(self) -> Any:
        params = self.param_groups[0]["params"]
        xp = backend.get_array_module(params[0].data)
        dtype = params[0].data.dtype
        total = sum(int(p.data.size) for p in params)
        out = xp.empty(total, dtype=dtype)
        offset = 0
        for p in params:
            n = int(p.data.size)
            if p.grad is None:
                out[offset : offset + n] = 0
            else:
                out[offset : offset + n] = p.grad.reshape(-1)
            offset += n
        return out

    def _add_grad(self, step_size: float, update: Any) -> None:
        """θ += step_size · update (update is the flat direction)."""
        layout = self._layout_for(self.param_groups[0])
        if layout.flat:
            layout.flat_param += step_size * update
            return
        offset = 0
        for p in self.param_groups[0]["params"]:
            n = int(p.data.size)
            p.data += step_size * update[offset : offset + n].reshape(p.data.shape)
            offset += n

    def _clone_param(self) -> list[Any]:
        return [p.data.copy() for p in self.param_groups[0]["params"]]

    def _set_param(self, params_data: list[Any]) -> None:
        for p, data in zip(self.param_groups[0]["params"], params_data):
            p.data[...] = data

    def _directional_evaluate(
        self, closure: Callable[[], Any], x: list[Any], t: float, d: Any
    ) -> tuple[float, Any]:
        self._add_grad(t, d)
        with enable_grad():
            loss = float(closure())
        flat_grad = self._gather_flat_grad()
        self._set_param(x)
        return loss, flat_grad

    # ------------------------------------------------------------------ step
    def _step(self, closure: Callable[[], Any] | None) -> Any:
        if closure is None:
            raise ValueError(
                "Expected a closure that re-evaluates the model and returns the loss (LBFGS "
                "calls it several times per step). Received: closure=None"
            )
        with no_grad():
            return self._lbfgs(closure)

    def _lbfgs(self, closure: Callable[[], Any]) -> Any:
        group = self.param_groups[0]
        lr = float(group["lr"])
        max_iter = group["max_iter"]
        max_eval = group["max_eval"]
        tolerance_grad = float(group["tolerance_grad"])
        tolerance_change = float(group["tolerance_change"])
        line_search_fn = group["line_search_fn"]
        history_size = group["history_size"]

        state = self.state[group["params"][0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        with enable_grad():
            orig_loss = closure()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1

        flat_grad = self._gather_flat_grad()
        xp = backend.get_array_module(flat_grad)
        opt_cond = float(xp.abs(flat_grad).max()) <= tolerance_grad
        if opt_cond:  # already optimal
            return orig_loss

        d = state.get("d")
        t = state.get("t")
        old_dirs = state.get("old_dirs")
        old_stps = state.get("old_stps")
        ro = state.get("ro")
        h_diag = state.get("H_diag")
        prev_flat_grad = state.get("prev_flat_grad")
        prev_loss = state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1

            # direction
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                h_diag = 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = float(xp.dot(y, s))
                if ys > 1e-10:  # update the memory
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    h_diag = ys / float(xp.dot(y, y))
                num_old = len(old_dirs)
                if "al" not in state:
                    state["al"] = [None] * history_size
                al = state["al"]
                # two-loop recursion: q = −g;  d = H q
                q = -flat_grad
                for i in range(num_old - 1, -1, -1):
                    al[i] = float(xp.dot(old_stps[i], q)) * ro[i]
                    q -= al[i] * old_dirs[i]
                d = r = q * h_diag
                for i in range(num_old):
                    be_i = float(xp.dot(old_dirs[i], r)) * ro[i]
                    r += (al[i] - be_i) * old_stps[i]

            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.copy()
            else:
                prev_flat_grad[...] = flat_grad
            prev_loss = loss

            # step length
            first = state["n_iter"] == 1
            t = min(1.0, 1.0 / float(xp.abs(flat_grad).sum())) * lr if first else lr

            gtd = float(xp.dot(flat_grad, d))  # directional derivative
            if gtd > -tolerance_change:
                break

            ls_func_evals = 0
            if line_search_fn is not None:
                x_init = self._clone_param()

                def obj_func(step: float, x: list[Any] = x_init, direction: Any = d) -> tuple[float, Any]:
                    return self._directional_evaluate(closure, x, step, direction)

                loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                    obj_func, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals
                )
                self._add_grad(t, d)
                opt_cond = float(xp.abs(flat_grad).max()) <= tolerance_grad
            else:
                self._add_grad(t, d)
                if n_iter != max_iter:
                    # re-evaluate unless this was the last iteration
                    with enable_grad():
                        loss = float(closure())
                    flat_grad = self._gather_flat_grad()
                    opt_cond = float(xp.abs(flat_grad).max()) <= tolerance_grad
                    ls_func_evals = 1

            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if float(xp.abs(d * t).max()) <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state["d"] = d
        state["t"] = t
        state["old_dirs"] = old_dirs
        state["old_stps"] = old_stps
        state["ro"] = ro
        state["H_diag"] = h_diag
        state["prev_flat_grad"] = prev_flat_grad
        state["prev_loss"] = prev_loss
        return orig_loss
