"""Global switches of the autograd engine: recording the graph (``no_grad`` / ``enable_grad``)
and rebuilding cheap activations in backward (``set_rebuild_enabled``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "enable_grad",
    "is_grad_enabled",
    "is_rebuild_enabled",
    "no_grad",
    "set_grad_enabled",
    "set_rebuild_enabled",
]

F = TypeVar("F", bound=Callable[..., Any])


class _State:
    enabled = True
    rebuild = True


_state = _State()


def is_grad_enabled() -> bool:
    """Whether operations on tensors that require grad are recorded."""
    return _state.enabled


def is_rebuild_enabled() -> bool:
    """Whether ops keep a rebuild instead of an input array they could compute again."""
    return _state.rebuild


class set_grad_enabled:
    """Context manager (and decorator) that sets whether the graph is recorded."""

    _field = "enabled"

    def __init__(self, mode: bool) -> None:
        self.mode = bool(mode)
        self._previous: list[bool] = []

    def __enter__(self) -> None:
        self._previous.append(getattr(_state, self._field))
        setattr(_state, self._field, self.mode)

    def __exit__(self, *exc: object) -> None:
        setattr(_state, self._field, self._previous.pop())

    def __call__(self, func: F) -> F:
        field, mode = self._field, self.mode

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            previous = getattr(_state, field)
            setattr(_state, field, mode)
            try:
                return func(*args, **kwargs)
            finally:
                setattr(_state, field, previous)

        return wrapper  # type: ignore[return-value]


class set_rebuild_enabled(set_grad_enabled):
    """Context manager (and decorator) that sets whether activations that are cheap to compute
    again are rebuilt in backward instead of kept (on by default).

    A batch-norm output, or a ReLU of one, that a later op keeps for backward (a convolution
    keeps its input) is computed again from batch norm's own saved input just before that
    op's backward: the activations of a conv → batch norm → ReLU → conv chain are kept once
    instead of twice, for one or two element-wise passes in backward. The results are equal
    to the last bit either way. Turn it off to trade that memory back for the passes.
    """

    _field = "rebuild"


class no_grad(set_grad_enabled):
    """Disable graph recording: ``with gradcraft.no_grad(): ...`` or ``@gradcraft.no_grad()``.

    Results computed inside do not require grad, so no intermediates are kept (evaluation,
    optimizer updates).
    """

    def __init__(self) -> None:
        super().__init__(False)


class enable_grad(set_grad_enabled):
    """Re-enable graph recording inside a ``no_grad`` block."""

    def __init__(self) -> None:
        super().__init__(True)
