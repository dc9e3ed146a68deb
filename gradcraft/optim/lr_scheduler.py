"""Learning-rate schedules (PyTorch's ``torch.optim.lr_scheduler``).

A scheduler owns an optimizer and rewrites ``group["lr"]`` of each of its parameter groups
when ``step()`` is called: once per **epoch** or once per **iteration** (minibatch),
whichever the schedule's "period" arguments count (``step_size``, ``T_max``,
``total_iters``, ...). Call it *after* ``optimizer.step()``::

    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = StepLR(opt, step_size=30, gamma=0.1)        # per epoch
    for epoch in range(90):
        for x, y in loader:
            opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
        sched.step()

Most schedules are *chainable*: ``step()`` multiplies the current rate by a factor, so that
:class:`ChainedScheduler` can compose them (warmup × decay). The learning rates equal
PyTorch's for the same calls. ``state_dict()`` returns plain JSON-able values (numbers,
strings, lists, dicts); :class:`LambdaLR` / :class:`MultiplicativeLR` do not save their
functions (as in PyTorch): rebuild the scheduler with the same function, then load.

The lectures' decay schedules: step decay (:class:`StepLR`, :class:`MultiStepLR`),
exponential decay ε_t = η^t ε_0 (:class:`ExponentialLR`), 1/t decay ε_t = ε_0 / (1 + K t)
(:class:`InverseTimeLR`); plus reduce-on-plateau, cosine annealing (with warm restarts),
linear warmup and the one-cycle policy. :func:`linear_scaling_rule` scales a learning rate
with the batch size (pair it with warmup).
"""

from __future__ import annotations

import math
import warnings
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from gradcraft.optim.optimizer import Optimizer, check_number

__all__ = [
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "ExponentialLR",
    "InverseTimeLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "MultiplicativeLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
    "linear_scaling_rule",
]


def linear_scaling_rule(base_lr: float, batch_size: int, base_batch_size: int = 256) -> float:
    """The learning rate for ``batch_size`` by the linear scaling rule of Goyal et al. (2017),
    "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour":

        lr = base_lr · batch_size / base_batch_size

    ``base_lr`` is the rate known to work at ``base_batch_size`` (0.1 for ResNet-50 at 256).
    Large rates need a gradual warmup (e.g. :class:`LinearLR` over the first epochs).

    Raises:
        ValueError: for a negative ``base_lr`` or non-positive batch sizes.
    """
    base_lr = check_number("base_lr", base_lr)
    if base_lr < 0:
        raise ValueError(f"Expected base_lr >= 0. Received: base_lr={base_lr}")
    _positive_int("batch_size", batch_size)
    _positive_int("base_batch_size", base_batch_size)
    return base_lr * batch_size / base_batch_size


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"Expected a positive integer {name}. Received: {name}={value!r}")
    return value


def _format_param(name: str, optimizer: Optimizer, value: Any) -> list[Any]:
    """One value per parameter group (a scalar is repeated)."""
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(
                f"Expected one {name} per parameter group ({len(optimizer.param_groups)}). "
                f"Received: {len(value)} values"
            )
        return list(value)
    return [value] * len(optimizer.param_groups)


class LRScheduler:
    """Base class of the schedules.

    Subclasses implement ``get_lr()`` (the new rates from ``last_epoch``, the number of
    ``step()`` calls so far) and, when they have one, ``_get_closed_form_lr()``.

    Args:
        optimizer: the wrapped optimizer.
        last_epoch: index of the last step; ``-1`` starts a schedule (and records each
            group's ``initial_lr``), a value ``>= 0`` resumes one (the groups must already
            hold ``initial_lr``).

    Attributes:
        base_lrs: the groups' initial learning rates.
        last_epoch: steps taken (``0`` right after construction).
    """

    _not_saved: tuple[str, ...] = ("optimizer", "_is_initial")

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"Expected an Optimizer. Received: {type(optimizer).__name__}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"Expected 'initial_lr' in param_groups[{i}] to resume a schedule at "
                        f"last_epoch={last_epoch}. Received: none (load the optimizer's state "
                        "first, or start with last_epoch=-1)"
                    )
        self.base_lrs: list[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._is_initial = False
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def _group_lrs(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def get_lr(self) -> list[float]:
        """The learning rates for the current ``last_epoch`` (called by ``step()``)."""
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last ``step()``, one per parameter group."""
        return list(self._last_lr)

    def step(self) -> None:
        """Advance the schedule by one epoch or iteration and write the new ``lr`` values."""
        if self._step_count == 1 and getattr(self.optimizer, "_step_count", 1) == 0:
            warnings.warn(
                "Detected a call of `lr_scheduler.step()` before `optimizer.step()`: call the "
                "optimizer first, or the first value of the schedule is skipped.",
                UserWarning,
                stacklevel=2,
            )
        self._step_count += 1
        self._update_lr(None)

    def _update_lr(self, epoch: int | None) -> None:
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            closed = getattr(self, "_get_closed_form_lr", None)
            values = closed() if closed is not None else self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = self._group_lrs()

    def state_dict(self) -> dict[str, Any]:
        """The schedule's counters and settings: JSON-serialisable values only."""
        return {k: _copy(v) for k, v in vars(self).items() if k not in self._not_saved}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore counters and settings saved by :meth:`state_dict`."""
        for k, v in state_dict.items():
            if k not in self._not_saved:
                setattr(self, k, _copy(v))


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy(v) for v in value]
    return value


class _LambdaBase(LRScheduler):
    _not_saved = ("optimizer", "_is_initial", "lr_lambdas")

    def __init__(
        self,
        optimizer: Optimizer,
        lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]],
        last_epoch: int = -1,
    ) -> None:
        self.optimizer = optimizer
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != len(optimizer.param_groups):
                raise ValueError(
                    f"Expected {len(optimizer.param_groups)} lr_lambdas (one per parameter group). "
                    f"Received: {len(lr_lambda)}"
                )
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * len(optimizer.param_groups)
        for fn in self.lr_lambdas:
            if not callable(fn):
                raise TypeError(f"Expected lr_lambda to be a function. Received: {type(fn).__name__}")
        super().__init__(optimizer, last_epoch)


class LambdaLR(_LambdaBase):
    """``lr = initial_lr · lr_lambda(last_epoch)`` — any schedule given as a function.

    Steps per epoch or per iteration, as the function counts. The function is not saved by
    ``state_dict()`` (as in PyTorch): construct the scheduler with it again before loading.

    Args:
        optimizer: the wrapped optimizer.
        lr_lambda: a function of the step index, or one per parameter group.
        last_epoch: see :class:`LRScheduler`.

    Example (linear warmup over 1000 iterations)::

        sched = LambdaLR(opt, lambda it: min(1.0, (it + 1) / 1000))
    """

    def get_lr(self) -> list[float]:
        return [base * fn(self.last_epoch) for fn, base in zip(self.lr_lambdas, self.base_lrs)]


class MultiplicativeLR(_LambdaBase):
    """``lr = lr · lr_lambda(last_epoch)`` at every step after the first (per epoch or per
    iteration). The function is not saved by ``state_dict()`` (as in PyTorch).

    Args:
        optimizer: the wrapped optimizer.
        lr_lambda: a function of the step index giving the factor, or one per group.
        last_epoch: see :class:`LRScheduler`.
    """

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return self._group_lrs()
        return [
            group["lr"] * fn(self.last_epoch)
            for fn, group in zip(self.lr_lambdas, self.optimizer.param_groups)
        ]


class StepLR(LRScheduler):
    """Step decay: multiply the rate by ``gamma`` every ``step_size`` steps.

    ``lr_t = initial_lr · gamma^⌊t / step_size⌋`` — the lectures' "reduce the learning rate by
    a constant every few epochs" (e.g. halve every 5 epochs, ×0.1 every 20). Usually stepped
    per epoch.

    Args:
        optimizer: the wrapped optimizer.
        step_size: period of the decay, in steps.
        gamma: multiplicative factor (default 0.1).
        last_epoch: see :class:`LRScheduler`.
    """

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        _positive_int("step_size", step_size)
        self.step_size = step_size
        self.gamma = check_number("gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._group_lrs()
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Multiply the rate by ``gamma`` at each milestone step (e.g. epochs 30, 60, 80).

    ``lr_t = initial_lr · gamma^(number of milestones ≤ t)``. Usually stepped per epoch.

    Args:
        optimizer: the wrapped optimizer.
        milestones: step indices (a milestone given twice decays twice).
        gamma: multiplicative factor (default 0.1).
        last_epoch: see :class:`LRScheduler`.
    """

    def __init__(
        self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = check_number("gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        count = self.milestones.count(self.last_epoch)
        if not count:
            return self._group_lrs()
        return [group["lr"] * self.gamma**count for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base * self.gamma ** bisect_right(self.milestones, self.last_epoch) for base in self.base_lrs]


class ConstantLR(LRScheduler):
    """Multiply the rate by a constant ``factor`` for the first ``total_iters`` steps, then
    restore it (a crude warmup). Per epoch or per iteration.

    Args:
        optimizer: the wrapped optimizer.
        factor: in [0, 1] (default 1/3).
        total_iters: steps during which the factor applies (default 5).
        last_epoch: see :class:`LRScheduler`.
    """

    def __init__(
        self, optimizer: Optimizer, factor: float = 1.0 / 3, total_iters: int = 5, last_epoch: int = -1
    ) -> None:
        factor = check_number("factor", factor)
        if not 0.0 <= factor <= 1.0:
            raise ValueError(f"Expected 0 <= factor <= 1. Received: factor={factor}")
        self.factor = factor
        self.total_iters = int(total_iters)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [group["lr"] * self.factor for group in self.optimizer.param_groups]
        if self.last_epoch != self.total_iters:
            return self._group_lrs()
        return [group["lr"] * (1.0 / self.factor) for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [
            base * (self.factor + (self.last_epoch >= self.total_iters) * (1 - self.factor))
            for base in self.base_lrs
        ]


class LinearLR(LRScheduler):
    """Linear warmup (or decay): the factor goes linearly from ``start_factor`` to
    ``end_factor`` over ``total_iters`` steps, then stays.

    ``lr_t = initial_lr · (start + (end − start) · min(t, total_iters) / total_iters)``.
    Step it per iteration for the warmup of Goyal et al. (2017) (see
    :func:`linear_scaling_rule`), or per epoch.

    Args:
        optimizer: the wrapped optimizer.
        start_factor: in (0, 1] (default 1/3).
        end_factor: in [0, 1] (default 1).
        total_iters: length of the ramp in steps (default 5).
        last_epoch: see :class:`LRScheduler`.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        start_factor = check_number("start_factor", start_factor)
        end_factor = check_number("end_factor", end_factor)
        if not 0.0 < start_factor <= 1.0:
            raise ValueError(f"Expected 0 < start_factor <= 1. Received: start_factor={start_factor}")
        if not 0.0 <= end_factor <= 1.0:
            raise ValueError(f"Expected 0 <= end_factor <= 1. Received: end_factor={end_factor}")
        _positive_int("total_iters", total_iters)
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [group["lr"] * self.start_factor for group in self.optimizer.param_groups]
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._group_lrs()
        diff = self.end_factor - self.start_factor
        factor = 1.0 + diff / (self.total_iters * self.start_factor + (self.last_epoch - 1) * diff)
        return [group["lr"] * factor for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [
            base
            * (
                self.start_factor
                + (self.end_factor - self.start_factor)
                * min(self.total_iters, self.last_epoch)
                / self.total_iters
            )
            for base in self.base_lrs
        ]


class ExponentialLR(LRScheduler):
    """Exponential decay: ``lr_t = initial_lr · gamma^t`` (the lectures' ε_t = η^t ε_0).

    Per epoch (gamma ≈ 0.9-0.99) or per iteration (gamma close to 1).

    Args:
        optimizer: the wrapped optimizer.
        gamma: multiplicative factor per step.
        last_epoch: see :class:`LRScheduler`.
    """

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = check_number("gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return self._group_lrs()
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base * self.gamma**self.last_epoch for base in self.base_lrs]


class InverseTimeLR(LRScheduler):
    """1/t decay: ``lr_t = initial_lr / (1 + decay_rate · t)`` (the lectures' ε_t = ε_0 / (1 + K t)).

    Applied chainably (``lr_t = lr_{t−1} · (1 + K(t−1)) / (1 + K t)``) so it composes with
    other schedules in :class:`ChainedScheduler`. Per epoch or per iteration (then K is small).
    Not in PyTorch; Keras calls it ``InverseTimeDecay``.

    Args:
        optimizer: the wrapped optimizer.
        decay_rate: K ≥ 0.
        last_epoch: see :class:`LRScheduler`.
    """

    def __init__(self, optimizer: Optimizer, decay_rate: float, last_epoch: int = -1) -> None:
        decay_rate = check_number("decay_rate", decay_rate)
        if decay_rate < 0:
            raise ValueError(f"Expected decay_rate >= 0. Received: decay_rate={decay_rate}")
        self.decay_rate = decay_rate
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self._is_initial or self.last_epoch == 0:
            return self._group_lrs()
        k, t = self.decay_rate, self.last_epoch
        factor = (1.0 + k * (t - 1)) / (1.0 + k * t)
        return [group["lr"] * factor for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base / (1.0 + self.decay_rate * self.last_epoch) for base in self.base_lrs]


class PolynomialLR(LRScheduler):
    """Polynomial decay to zero over ``total_iters`` steps:
    ``lr_t = initial_lr · (1 − min(t, total_iters) / total_iters)^power``. Per epoch or per
    iteration.

    Args:
        optimizer: the wrapped optimizer.
        total_iters: steps until the rate reaches zero (default 5).
        power: the polynomial's power (default 1, linear decay).
        last_epoch: see :class:`LRScheduler`.
    """

    def __init__(
        self, optimizer: Optimizer, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1
    ) -> None:
        _positive_int("total_iters", total_iters)
        self.total_iters = total_iters
        self.power = check_number("power", power)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._group_lrs()
        factor = (
            (1.0 - self.last_epoch / self.total_iters) / (1.0 - (self.last_epoch - 1) / self.total_iters)
        ) ** self.power
        return [group["lr"] * factor for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [
            base * (1.0 - min(self.total_iters, self.last_epoch) / self.total_iters) ** self.power
            for base in self.base_lrs
        ]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing (Loshchilov & Hutter, 2017, without restarts):

        η_t = η_min + ½ (η_max − η_min) (1 + cos(π t / T_max))

    applied chainably, as PyTorch does (the rate follows the cosine; past ``T_max`` it climbs
    back, a period of 2·T_max). Per epoch or per iteration, as ``T_max`` counts.

    Reference: Loshchilov & Hutter (2017), "SGDR: Stochastic Gradient Descent with Warm
    Restarts", ICLR.

    Args:
        optimizer: the wrapped optimizer.
        T_max: half-period in steps.
        eta_min: the minimum rate (default 0).
        last_epoch: see :class:`LRScheduler`.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        _positive_int("T_max", T_max)
        self.T_max = T_max
        self.eta_min = check_number("eta_min", eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return self._group_lrs()
        if self._step_count == 1 and self.last_epoch > 0:
            return [
                self.eta_min
                + (base - self.eta_min) * (1 + math.cos(self.last_epoch * math.pi / self.T_max)) / 2
                for base in self.base_lrs
            ]
        if (self.last_epoch - 1 - self.T_max) % (2 * self.T_max) == 0:
            return [
                group["lr"] + (base - self.eta_min) * (1 - math.cos(math.pi / self.T_max)) / 2
                for base, group in zip(self.base_lrs, self.optimizer.param_groups)
            ]
        return [
            (1 + math.cos(math.pi * self.last_epoch / self.T_max))
            / (1 + math.cos(math.pi * (self.last_epoch - 1) / self.T_max))
            * (group["lr"] - self.eta_min)
            + self.eta_min
            for group in self.optimizer.param_groups
        ]

    def _get_closed_form_lr(self) -> list[float]:
        return [
            self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
            for base in self.base_lrs
        ]


class CosineAnnealingWarmRestarts(LRScheduler):
    r"""SGDR: cosine annealing with warm restarts (Loshchilov & Hutter, 2017):

        η_t = η_min + ½ (η_max − η_min) (1 + cos(π T_cur / T_i))

    where ``T_cur`` counts steps since the last restart and the i-th period lasts
    ``T_i = T_0 · T_mult^i``. ``step()`` advances by one (per epoch); for per-iteration
    annealing pass fractional epochs, ``step(epoch + i / iters_per_epoch)``.

    Reference: Loshchilov & Hutter (2017), "SGDR: Stochastic Gradient Descent with Warm
    Restarts", ICLR. Saving the weights at each restart gives a snapshot ensemble (Huang et
    al., 2017).

    Args:
        optimizer: the wrapped optimizer.
        T_0: length of the first period (a positive integer).
        T_mult: growth factor of the period (an integer ≥ 1, default 1).
        eta_min: the minimum rate (default 0).
        last_epoch: see :class:`LRScheduler`.
    """

    def __init__(
        self, optimizer: Optimizer, T_0: int, T_mult: int = 1, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        _positive_int("T_0", T_0)
        if isinstance(T_mult, bool) or not isinstance(T_mult, int) or T_mult < 1:
            raise ValueError(f"Expected an integer T_mult >= 1. Received: T_mult={T_mult!r}")
        self.T_0 = T_0
        self.T_i = T_0
        self.T_mult = T_mult
        self.eta_min = check_number("eta_min", eta_min)
        self.T_cur: float = last_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [
            self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
            for base in self.base_lrs
        ]

    def step(self, epoch: float | None = None) -> None:
        """Advance one step, or jump to ``epoch`` (fractional epochs anneal per iteration).

        Raises:
            ValueError: for a negative ``epoch``.
        """
        if self._step_count == 1 and getattr(self.optimizer, "_step_count", 1) == 0 and epoch is None:
            warnings.warn(
                "Detected a call of `lr_scheduler.step()` before `optimizer.step()`: call the "
                "optimizer first, or the first value of the schedule is skipped.",
                UserWarning,
                stacklevel=2,
            )
        self._step_count += 1
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            if epoch < 0:
                raise ValueError(f"Expected a non-negative epoch. Received: epoch={epoch}")
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:
                    n = int(math.log((epoch / self.T_0 * (self.T_mult - 1) + 1), self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult**n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult**n
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
        self.last_epoch = math.floor(epoch)
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = self._group_lrs()


class OneCycleLR(LRScheduler):
    r"""The 1cycle policy (Smith & Topin, 2019): the rate rises from ``max_lr / div_factor`` to
    ``max_lr`` over the first ``pct_start`` of the run, then anneals to
    ``initial_lr / final_div_factor``; momentum (or Adam's β1) moves inversely between
    ``max_momentum`` and ``base_momentum``. **Stepped per iteration** (``total_steps`` =
    epochs × batches per epoch); stepping past ``total_steps`` raises.

    Reference: Smith & Topin (2019), "Super-Convergence: Very Fast Training of Neural Networks
    Using Large Learning Rates".

    Args:
        optimizer: the wrapped optimizer.
        max_lr: the peak rate (or one per group).
        total_steps: length of the cycle, or give ``epochs`` and ``steps_per_epoch``.
        epochs, steps_per_epoch: the cycle's length as their product.
        pct_start: fraction of the cycle spent rising (default 0.3).
        anneal_strategy: ``"cos"`` (default) or ``"linear"``.
        cycle_momentum: cycle ``momentum`` / ``betas[0]`` too (default True).
        base_momentum, max_momentum: momentum range (defaults 0.85, 0.95).
        div_factor: ``initial_lr = max_lr / div_factor`` (default 25).
        final_div_factor: ``min_lr = initial_lr / final_div_factor`` (default 1e4).
        three_phase: a symmetric rise and fall, then the final annealing (fast.ai style).
        last_epoch: see :class:`LRScheduler`.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float | list[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: Literal["cos", "linear"] = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.85,
        max_momentum: float | list[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"Expected an Optimizer. Received: {type(optimizer).__name__}")
        self.optimizer = optimizer
        if total_steps is not None:
            _positive_int("total_steps", total_steps)
            self.total_steps = total_steps
        elif epochs is not None and steps_per_epoch is not None:
            _positive_int("epochs", epochs)
            _positive_int("steps_per_epoch", steps_per_epoch)
            self.total_steps = epochs * steps_per_epoch
        else:
            raise ValueError(
                "Expected total_steps, or epochs and steps_per_epoch. Received: "
                f"total_steps={total_steps}, epochs={epochs}, steps_per_epoch={steps_per_epoch}"
            )
        if isinstance(pct_start, bool) or not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ValueError(f"Expected a float 0 <= pct_start <= 1. Received: pct_start={pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"Expected anneal_strategy 'cos' or 'linear'. Received: anneal_strategy={anneal_strategy!r}"
            )
        self.anneal_strategy = anneal_strategy
        if three_phase:
            self._schedule_phases = [
                {
                    "end_step": float(pct_start * self.total_steps) - 1,
                    "start_lr": "initial_lr",
                    "end_lr": "max_lr",
                    "start_momentum": "max_momentum",
                    "end_momentum": "base_momentum",
                },
                {
                    "end_step": float(2 * pct_start * self.total_steps) - 2,
                    "start_lr": "max_lr",
                    "end_lr": "initial_lr",
                    "start_momentum": "base_momentum",
                    "end_momentum": "max_momentum",
                },
                {
                    "end_step": self.total_steps - 1,
                    "start_lr": "initial_lr",
                    "end_lr": "min_lr",
                    "start_momentum": "max_momentum",
                    "end_momentum": "max_momentum",
                },
            ]
        else:
            self._schedule_phases = [
                {
                    "end_step": float(pct_start * self.total_steps) - 1,
                    "start_lr": "initial_lr",
                    "end_lr": "max_lr",
                    "start_momentum": "max_momentum",
                    "end_momentum": "base_momentum",
                },
                {
                    "end_step": self.total_steps - 1,
                    "start_lr": "max_lr",
                    "end_lr": "min_lr",
                    "start_momentum": "base_momentum",
                    "end_momentum": "max_momentum",
                },
            ]
        max_lrs = _format_param("max_lr", optimizer, max_lr)
        if last_epoch == -1:
            for lr, group in zip(max_lrs, optimizer.param_groups):
                group["initial_lr"] = lr / div_factor
                group["max_lr"] = lr
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = bool(cycle_momentum)
        self.use_beta1 = False
        if self.cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError(
                    "Expected an optimizer with momentum or betas for cycle_momentum=True. "
                    f"Received: {type(optimizer).__name__}"
                )
            self.use_beta1 = "betas" in optimizer.defaults
            max_moms = _format_param("max_momentum", optimizer, max_momentum)
            base_moms = _format_param("base_momentum", optimizer, base_momentum)
            if last_epoch == -1:
                for m_max, m_base, group in zip(max_moms, base_moms, optimizer.param_groups):
                    if self.use_beta1:
                        group["betas"] = (m_max, *group["betas"][1:])
                    else:
                        group["momentum"] = m_max
                    group["max_momentum"] = m_max
                    group["base_momentum"] = m_base
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _annealing_cos(start: float, end: float, pct: float) -> float:
        """Cosine from ``start`` to ``end`` as ``pct`` goes from 0 to 1."""
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    @staticmethod
    def _annealing_linear(start: float, end: float, pct: float) -> float:
        """Straight line from ``start`` to ``end`` as ``pct`` goes from 0 to 1."""
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        step_num = self.last_epoch
        if step_num > self.total_steps:
            raise ValueError(
                f"Expected at most total_steps={self.total_steps} steps of OneCycleLR. "
                f"Received: step {step_num}"
            )
        anneal = self._annealing_cos if self.anneal_strategy == "cos" else self._annealing_linear
        lrs = []
        for group in self.optimizer.param_groups:
            start_step = 0.0
            computed_lr = computed_momentum = 0.0
            for i, phase in enumerate(self._schedule_phases):
                end_step = phase["end_step"]
                if step_num <= end_step or i == len(self._schedule_phases) - 1:
                    pct = (step_num - start_step) / (end_step - start_step)
                    computed_lr = anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct)
                    if self.cycle_momentum:
                        computed_momentum = anneal(
                            group[phase["start_momentum"]], group[phase["end_momentum"]], pct
                        )
                    break
                start_step = phase["end_step"]
            lrs.append(computed_lr)
            if self.cycle_momentum:
                if self.use_beta1:
                    group["betas"] = (computed_momentum, *group["betas"][1:])
                else:
                    group["momentum"] = computed_momentum
        return lrs


class SequentialLR(LRScheduler):
    """Run schedulers one after another, switching at ``milestones`` (e.g. warmup, then
    cosine). Each scheduler restarts its own count at its milestone. Steps per epoch or per
    iteration, as its schedulers do.

    Args:
        optimizer: the wrapped optimizer (all schedulers must wrap it).
        schedulers: the schedules, in order.
        milestones: the steps at which the next scheduler takes over (one fewer than
            ``schedulers``).
        last_epoch: see :class:`LRScheduler`.

    Example::

        warmup = LinearLR(opt, start_factor=0.01, total_iters=500)
        cosine = CosineAnnealingLR(opt, T_max=9500)
        sched = SequentialLR(opt, [warmup, cosine], milestones=[500])
    """

    _not_saved = ("optimizer", "_is_initial", "_schedulers")

    def __init__(
        self,
        optimizer: Optimizer,
        schedulers: Sequence[LRScheduler],
        milestones: Sequence[int],
        last_epoch: int = -1,
    ) -> None:
        _check_schedulers(type(self).__name__, optimizer, schedulers)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                f"Expected {len(schedulers) - 1} milestones (one fewer than schedulers). "
                f"Received: {len(milestones)}"
            )
        self._schedulers = list(schedulers)
        self._milestones = [int(m) for m in milestones]
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        self._is_initial = False
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        self._undo_initial_steps(self)
        idx = bisect_right(self._milestones, 0)
        self._schedulers[idx]._initial_step()
        self._last_lr = self._schedulers[idx].get_last_lr()

    def _undo_initial_steps(self, sched: Any) -> None:
        if hasattr(sched, "_schedulers"):
            for s in sched._schedulers:
                self._undo_initial_steps(s)
        elif hasattr(sched, "last_epoch"):
            sched.last_epoch -= 1

    def step(self) -> None:  # type: ignore[override]
        """Advance the active scheduler (switching at a milestone)."""
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        out["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        subs = state_dict.get("_schedulers", [])
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "_schedulers"})
        for s, sd in zip(self._schedulers, subs):
            s.load_state_dict(sd)


class ChainedScheduler(LRScheduler):
    """Step several chainable schedulers together, so their factors multiply (e.g. a
    :class:`LinearLR` warmup × an :class:`ExponentialLR` decay).

    Args:
        schedulers: the schedules (all on the same optimizer).
        optimizer: the wrapped optimizer (default: the schedulers').
    """

    _not_saved = ("optimizer", "_is_initial", "_schedulers")

    def __init__(self, schedulers: Sequence[LRScheduler], optimizer: Optimizer | None = None) -> None:
        if len(schedulers) < 1:
            raise ValueError("Expected at least one scheduler to chain. Received: none")
        optimizer = optimizer or schedulers[0].optimizer
        _check_schedulers(type(self).__name__, optimizer, schedulers)
        self._schedulers = list(schedulers)
        self.optimizer = optimizer
        self._is_initial = False
        self._last_lr = [group["lr"] for group in self._schedulers[-1].optimizer.param_groups]

    def step(self) -> None:  # type: ignore[override]
        """Step every scheduler in order."""
        for scheduler in self._schedulers:
            scheduler.step()
        self._last_lr = [group["lr"] for group in self._schedulers[-1].optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        out["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        subs = state_dict.get("_schedulers", [])
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "_schedulers"})
        for s, sd in zip(self._schedulers, subs):
            s.load_state_dict(sd)


def _check_schedulers(owner: str, optimizer: Optimizer, schedulers: Sequence[LRScheduler]) -> None:
    if len(schedulers) < 1:
        raise ValueError(f"Expected at least one scheduler in {owner}. Received: none")
    for i, s in enumerate(schedulers):
        if isinstance(s, ReduceLROnPlateau):
            raise ValueError(
                f"Expected schedulers stepped without arguments in {owner}. Received: a "
                f"ReduceLROnPlateau at index {i} (it needs the metric)"
            )
        if not hasattr(s, "optimizer"):
            raise TypeError(f"Expected LR schedulers in {owner}. Received: {type(s).__name__} at index {i}")
        if s.optimizer is not optimizer:
            raise ValueError(
                f"Expected every scheduler in {owner} to wrap the same optimizer. Received: "
                f"{type(s).__name__} at index {i} wraps another one"
            )


class ReduceLROnPlateau(LRScheduler):
    """Reduce the rate by ``factor`` when a metric has stopped improving for ``patience``
    steps (the lectures' "decay when the validation error stops improving").

    Call ``step(metric)`` once per evaluation (usually per epoch) with, e.g., the validation
    loss. A value is an improvement when it beats the best so far by ``threshold``
    (relative: ``best · (1 − threshold)`` in ``min`` mode; absolute: ``best − threshold``).
    After ``patience`` evaluations without improvement the rate becomes
    ``max(lr · factor, min_lr)``, then ``cooldown`` evaluations are ignored.

    Args:
        optimizer: the wrapped optimizer.
        mode: ``"min"`` (loss) or ``"max"`` (accuracy).
        factor: the reduction, < 1 (default 0.1).
        patience: evaluations without improvement tolerated (default 10).
        threshold: improvement threshold (default 1e-4).
        threshold_mode: ``"rel"`` or ``"abs"``.
        cooldown: evaluations to wait after a reduction (default 0).
        min_lr: lower bound (or one per group, default 0).
        eps: reductions smaller than this are skipped (default 1e-8).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        mode: Literal["min", "max"] = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: Literal["rel", "abs"] = "rel",
        cooldown: int = 0,
        min_lr: float | list[float] = 0.0,
        eps: float = 1e-8,
    ) -> None:
        factor = check_number("factor", factor)
        if factor >= 1.0:
            raise ValueError(f"Expected factor < 1. Received: factor={factor}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"Expected an Optimizer. Received: {type(optimizer).__name__}")
        self.factor = factor
        self.optimizer = optimizer
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(optimizer.param_groups):
                raise ValueError(
                    f"Expected {len(optimizer.param_groups)} min_lrs (one per group). Received: {len(min_lr)}"
                )
            self.default_min_lr: float | None = None
            self.min_lrs = [float(m) for m in min_lr]
        else:
            self.default_min_lr = float(min_lr)
            self.min_lrs = [float(min_lr)] * len(optimizer.param_groups)
        self.patience = int(patience)
        self.cooldown = int(cooldown)
        self.eps = float(eps)
        self.last_epoch = 0
        self._is_initial = False
        self._step_count = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]
        self._init_is_better(mode, threshold, threshold_mode)
        self._reset()

    def _init_is_better(self, mode: str, threshold: float, threshold_mode: str) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"Expected mode 'min' or 'max'. Received: mode={mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(
                f"Expected threshold_mode 'rel' or 'abs'. Received: threshold_mode={threshold_mode!r}"
            )
        self.mode = mode
        self.threshold = float(threshold)
        self.threshold_mode = threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf

    def _reset(self) -> None:
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metrics: Any) -> None:  # type: ignore[override]
        """Record one evaluation of the monitored metric (a number or one-element tensor)."""
        current = float(metrics)
        self.last_epoch += 1
        self._step_count += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _reduce_lr(self) -> None:
        if len(self.optimizer.param_groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(
                    f"Expected {len(self.min_lrs)} parameter groups, as when ReduceLROnPlateau was "
                    f"built with one min_lr per group. Received: {len(self.optimizer.param_groups)} "
                    "(a group was added; update `min_lrs`)"
                )
            self.min_lrs = [self.default_min_lr] * len(self.optimizer.param_groups)
        for i, group in enumerate(self.optimizer.param_groups):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, self.min_lrs[i])
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        out.pop("mode_worse", None)
        if not math.isfinite(out["best"]):
            out["best"] = None  # strict JSON has no infinity: None means "no value yet"
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._init_is_better(self.mode, self.threshold, self.threshold_mode)
        if self.best is None:
            self.best = self.mode_worse
