"""``Function``: the unit of differentiation.

A Function subclass implements ``forward(*arrays, **params) -> array`` and
``backward(grad_out) -> grad or tuple of grads`` on raw arrays (NumPy or CuPy), with the
minibatch on axis 0. ``Function.apply(*inputs, **params)`` runs ``forward`` on the inputs'
arrays and, when any input requires grad and grad mode is on, records the call as a graph node
on the output tensor. This is the only place gradients are written by hand.

The graph links Functions, not tensors: a node's ``parents`` hold, per input, the Function
that produced it, the input itself when it is a leaf that requires grad, or ``None``. An
intermediate tensor's array is therefore freed as soon as nothing but the graph refers to it,
unless its Function saved it for ``backward`` (as in PyTorch); a batch-norm output that only
feeds a ReLU costs no memory between the forward and the backward pass.

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
    #: a weak reference to the output tensor, set by ``Tensor.retain_grad()``
    retained: Any = None

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
            fn.parents = tuple(_edge(x) for x in inputs)
            fn.output_shape = data.shape
            out._ctx = fn
        return out

    @property
    def name(self) -> str:
        """A short label for graph printing and error messages."""
        return type(self).__name__


def _edge(x: Any) -> Any:
    """What the graph keeps of an input: its Function, itself if a leaf needing grad, or None."""
    if not isinstance(x, Tensor) or not x.requires_grad:
        return None
    return x if x._ctx is None else x._ctx
