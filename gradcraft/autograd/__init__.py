"""Reverse-mode automatic differentiation over a dynamic graph."""

from gradcraft.autograd.function import Function
from gradcraft.autograd.grad_mode import (
    enable_grad,
    is_grad_enabled,
    is_rebuild_enabled,
    no_grad,
    set_grad_enabled,
    set_rebuild_enabled,
)
from gradcraft.autograd.gradcheck import GradcheckError, gradcheck
from gradcraft.autograd.tensor import Tensor

__all__ = [
    "Function",
    "GradcheckError",
    "Tensor",
    "enable_grad",
    "gradcheck",
    "is_grad_enabled",
    "is_rebuild_enabled",
    "no_grad",
    "set_grad_enabled",
    "set_rebuild_enabled",
]
