"""Global switch for recording the graph: ``no_grad`` / ``enable_grad``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["enable_grad", "is_grad_enabled", "no_grad", "set_grad_enabled"]

F = TypeVar("F", bound=Callable[..., Any])


class _State:
    enabled = True


_state = _State()


def is_grad_enabled() -> bool:
    """Whether operations on tensors that require grad are recorded."""
    return _state.enabled


class set_grad_enabled:
    """Context manager (and decorator) that sets whether the graph is recorded."""

    def __init__(self, mode: bool) -> None:
        self.mode = bool(mode)
        self._previous: list[bool] = []

    def __enter__(self) -> None:
        self._previous.append(_state.enabled)
        _state.enabled = self.mode

    def __exit__(self, *exc: object) -> None:
        _state.enabled = self._previous.pop()

    def __call__(self, func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with set_grad_enabled(self.mode):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


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
