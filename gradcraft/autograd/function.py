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
input ``i`` needs a gradient (all False when the call is not recorded: under ``no_grad()`` or
when no input requires grad), so ``backward`` may return ``None`` for the others and ``forward``
may skip saving what only they would need.

**Rebuilt inputs.** Some outputs are cheap to compute again, bit for bit, from arrays their
Function keeps anyway: batch norm's output from the input it keeps for its own backward, and a
ReLU's output from such a batch-norm output. Such a Function sets ``self.output_rebuild`` in
``forward`` to a callable that returns a fresh copy of its output (holding arrays, never the
Function itself, so that no reference cycle delays freeing them), and ``apply`` attaches it to
the output tensor. When a later Function saves that tensor's array for backward (a
convolution keeps its input), ``apply`` keeps the rebuild instead, and the backward pass
calls it just before that Function's ``backward``. The array itself is then freed once the
forward pass moves on: the activations between batch norm, ReLU and the next convolution cost
memory once (batch norm's input) rather than twice, for one extra element-wise pass in
backward. Arrays below ``REBUILD_MIN_BYTES`` are kept as they are.

``forward`` sees the inputs' rebuilds in ``self.input_rebuilds`` (per input, a
:class:`Rebuild` or None; None as a whole when no input has one), so element-wise ops can
chain them. Replacing a tensor's ``data`` drops its rebuild; writing into the array in place
is not supported (PyTorch raises for it). ``gradcraft.set_rebuild_enabled(False)`` keeps the
arrays instead.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from gradcraft.autograd import grad_mode
from gradcraft.autograd.tensor import Tensor

__all__ = ["Function", "Rebuild"]

_state = grad_mode._state
_new_tensor = object.__new__


#: Smaller arrays are kept as they are: the memory a rebuild saves is small against the
#: process's own, and its passes cost about twice as much per byte as on large arrays (the
#: benchmark residual network at batch 32: 3 % of the step for 9 MiB; at 512: 2.4 % for 141 MiB).
REBUILD_MIN_BYTES = 4 << 20


class Rebuild:
    """How to compute a tensor's array again: ``make()`` returns an equal, fresh array.

    ``source`` is a weak reference to the array it rebuilds, so a tensor whose ``data`` was
    replaced is recognized (``applies_to``) and saved as it is.
    """

    __slots__ = ("make", "source")

    def __init__(self, make: Callable[[], Any], array: Any) -> None:
        self.make = make
        self.source = weakref.ref(array)

    def applies_to(self, tensor: Tensor) -> bool:
        return self.source() is tensor.data


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
    #: set in ``forward`` by ops whose output can be rebuilt from what they keep (module docs)
    output_rebuild: Callable[[], Any] | None = None
    #: set by ``apply`` before ``forward`` when an input's array can be rebuilt (module docs)
    input_rebuilds: tuple[Rebuild | None, ...] | None = None
    #: True once ``saved`` holds :class:`Rebuild` entries in place of input arrays
    saved_rebuilds = False
    #: set by the backward pass before ``backward(g)``: True when nothing else refers to ``g``
    #: (not a view, not also the gradient of another input, not the caller's array), so
    #: ``backward`` may write its result into ``g`` instead of a new array
    grad_donated = False

    def save_for_backward(self, *arrays: Any) -> None:
        """Keep arrays needed by ``backward`` (released after the backward pass)."""
        self.saved = arrays

    def forward(self, *arrays: Any, **params: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def backward(self, grad_out: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} is not differentiable (no backward())")

    @classmethod
    def apply(cls, *inputs: Any, **params: Any) -> Tensor:
        """Run the op on tensors (or constants) and record it in the graph when needed.

        Written for speed (every op of every step passes here): one loop over the inputs
        collects their arrays and graph edges, and nothing else is built for an op that is not
        recorded, whose ``needs_input_grad`` is then all False.
        """
        fn = cls()
        arrays = []
        parents = []
        record = rebuildable = False
        for x in inputs:
            if isinstance(x, Tensor):
                arrays.append(x.data)
                if x.requires_grad:
                    record = True
                    parents.append(x if x._ctx is None else x._ctx)
                else:
                    parents.append(None)
                if x._rebuild is not None:
                    rebuildable = True
            else:
                arrays.append(x)
                parents.append(None)
        if record and _state.enabled:
            fn.needs_input_grad = tuple([p is not None for p in parents])
            rebuildable = rebuildable and _state.rebuild
            if rebuildable:
                fn.input_rebuilds = tuple([_rebuild_of(x) for x in inputs])
        else:
            record = rebuildable = False
            fn.needs_input_grad = (False,) * len(inputs)
        try:
            data = fn.forward(*arrays, **params) if params else fn.forward(*arrays)
        except ValueError as err:
            shapes = ", ".join(str(getattr(a, "shape", type(a).__name__)) for a in arrays)
            raise ValueError(f"{cls.__name__}: {err} (input shapes: {shapes})") from err
        out = _new_tensor(Tensor)  # Tensor._from_op inlined: the call is 4 % of a tiny op
        out.data = data
        out.grad = out._rebuild = out.name = None
        out.requires_grad = record
        if record:
            fn.parents = tuple(parents)
            fn.output_shape = data.shape
            out._ctx = fn
            if fn.output_rebuild is not None:
                out._rebuild = Rebuild(fn.output_rebuild, data)
            if rebuildable:
                fn._keep_rebuilds(arrays)
        else:
            out._ctx = None
        return out

    def _keep_rebuilds(self, arrays: list[Any]) -> None:
        """Replace each saved input array that can be rebuilt by its :class:`Rebuild`."""
        saved = self.__dict__.get("saved")
        if not saved:
            return
        by_array = {
            id(a): r
            for a, r in zip(arrays, self.input_rebuilds)
            if r is not None and a.nbytes >= REBUILD_MIN_BYTES
        }
        kept = tuple(by_array.get(id(a), a) if a is not None else None for a in saved)
        if any(isinstance(a, Rebuild) for a in kept):
            self.saved = kept
            self.saved_rebuilds = True

    def rebuild_saved(self) -> tuple[Any, ...]:
        """``saved`` with every :class:`Rebuild` replaced by its array (each made once);
        the backward pass sets this as ``saved`` just before calling ``backward``."""
        made: dict[int, Any] = {}
        for a in self.saved:
            if isinstance(a, Rebuild) and id(a) not in made:
                made[id(a)] = a.make()
        return tuple(made[id(a)] if isinstance(a, Rebuild) else a for a in self.saved)

    @property
    def name(self) -> str:
        """A short label for graph printing and error messages."""
        return type(self).__name__


def _rebuild_of(x: Any) -> Rebuild | None:
    """The input's :class:`Rebuild` when it still describes the input's array, else None."""
    if not isinstance(x, Tensor) or x._rebuild is None or not x._rebuild.applies_to(x):
        return None
    return x._rebuild

