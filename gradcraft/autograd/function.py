"""``Function``: the unit of differentiation.

A Function subclass implements ``forward(*arrays, **params) -> array`` and
``backward(grad_out) -> grad or tuple of grads`` on raw arrays (NumPy or CuPy), with the
minibatch on axis 0. ``Function.apply(*inputs, **params)`` runs ``forward`` on the inputs'
arrays and, when any input requires grad and grad mode is on, records the call as a graph node
on the output tensor. This is the only place gradients are written by hand.

Inside ``forward`` a Function keeps what ``backward`` needs on ``self`` (``save_for_backward``
for arrays, plain attributes for shapes or flags). ``self.needs_input_grad[i]`` says whether
input ``i`` needs a gradient, so ``backward`` may return ``None`` for the others and ``forward``
may skip saving what only they would need.
"""

from __future__ import annotations

from typing import Any

from gradcraft.autograd import grad_mode
from gradcraft.autograd.tensor import Tensor

__all__ = ["Function"]


class Function:
    """Base class of every differentiable operation.

    Example (the derivative sits beside the forward rule)::

        class Exp(Function):
            def forward(self, x):
                y = xp.exp(x)
                self.save_for_backward(y)  # exp keeps its output
                return y

            def backward(self, grad):
                (y,) = self.saved
                return grad * y
    """

    #: set on instances whose graph was freed by ``backward()``
    released = False

    def save_for_backward(self, *arrays: Any) -> None:
        """Keep arrays needed by ``backward`` (released after the backward pass)."""
        self.saved = arrays

    def forward(self, *arrays: Any, **params: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def backward(self, grad_out: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} is not differentiable (no backward())")

    @classmethod
    def apply(cls, *inputs: Any, **params: Any) -> Tensor:
        """Run the op on tensors (or constants) and record it in the graph when needed."""
        fn = cls()
        arrays = []
        needs = []
        for x in inputs:
            if isinstance(x, Tensor):
                arrays.append(x.data)
                needs.append(x.requires_grad)
            else:
                arrays.append(x)
                needs.append(False)
        record = grad_mode._state.enabled and any(needs)
        fn.needs_input_grad = tuple(needs)
        try:
            data = fn.forward(*arrays, **params)
        except ValueError as err:
            shapes = ", ".join(str(getattr(a, "shape", type(a).__name__)) for a in arrays)
            raise ValueError(f"{cls.__name__}: {err} (input shapes: {shapes})") from err
        out = Tensor._from_op(data, record)
        if record:
            fn.parents = inputs
            out._ctx = fn
        return out

    @property
    def name(self) -> str:
        """A short label for graph printing and error messages."""
        return type(self).__name__
