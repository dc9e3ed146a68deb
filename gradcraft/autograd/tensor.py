"""``Tensor``: an array with an optional gradient and a link to the op that produced it.

A tensor holds ``data`` (a NumPy or CuPy array), ``requires_grad``, ``grad`` (an array of the
same shape, filled by :meth:`Tensor.backward`) and ``_ctx``, the :class:`Function` that made it
(``None`` for leaves). The graph refers to Functions and leaves only, never to intermediate
tensors, so an intermediate's array lives only as long as user code or a ``save_for_backward``
holds it. Arithmetic, reductions, shape ops and activations are attached as
methods by :mod:`gradcraft.ops.tensor_methods`; each is a thin wrapper over a Function.

``grad`` is a raw array, not a Tensor (as in Chainer): optimizers and clipping work on it
directly. ``backward()`` accumulates into the ``grad`` of every leaf that requires grad.
"""

from __future__ import annotations

import sys
import weakref
from typing import Any

import numpy as np

from gradcraft import backend
from gradcraft.autograd import grad_mode

__all__ = ["Tensor"]


class Tensor:
    """A multi-dimensional array that records operations for reverse-mode differentiation.

    Args:
        data: array-like; Python floats become the default dtype (float32).
        requires_grad: whether gradients should be computed for this tensor.
        dtype: optional dtype to convert to.
    """

    __slots__ = ("__weakref__", "_ctx", "_rebuild", "data", "grad", "name", "requires_grad")
    __array_priority__ = 1000  # so ndarray <op> Tensor defers to Tensor's reflected op

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        if isinstance(data, Tensor):
            data = data.data
        self.data = backend.as_array(data, dtype)
        self.grad: Any = None
        self._ctx: Any = None
        self._rebuild: Any = None
        self.name: str | None = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _from_op(cls, data: Any, requires_grad: bool) -> Tensor:
        t = cls.__new__(cls)
        t.data = data
        t.grad = None
        t._ctx = None
        t._rebuild = None
        t.name = None
        t.requires_grad = requires_grad
        return t

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def is_leaf(self) -> bool:
        """True for tensors not produced by a recorded op (inputs and parameters)."""
        return self._ctx is None

    @property
    def grad_fn(self) -> Any:
        """The Function that produced this tensor, or ``None`` for a leaf."""
        return self._ctx

    @property
    def device(self) -> str:
        return "cuda" if type(self.data).__module__.startswith("cupy") else "cpu"

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __repr__(self) -> str:
        extra = ""
        if self._ctx is not None:
            extra = f", grad_fn={self._ctx.name}"
        elif self.requires_grad:
            extra = ", requires_grad=True"
        body = np.array2string(np.asarray(self.numpy()), separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{extra})"

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise ValueError(
                f"The truth value of a tensor with {self.data.size} elements is ambiguous; "
                "use .any() or .all()"
            )
        return bool(self.data)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    # ------------------------------------------------------------------ conversion
    def item(self) -> Any:
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element. Received: shape={self.shape}")
        return self.data.reshape(()).item()

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied from the GPU when needed, shared on CPU)."""
        if self.device == "cuda":
            return self.data.get()
        return self.data

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def to(self, device: Any) -> Tensor:
        """This tensor on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``): itself when it
        already lives there, else a copy there with the same ``requires_grad``. The copy is a
        new leaf, not recorded in the graph: move inputs and parameters before computing.

        Raises:
            ValueError: for an unknown device name.
            ImportError: for ``"cuda"`` without CuPy (``pip install 'gradcraft[gpu]'``).
            RuntimeError: for ``"cuda"`` when CuPy finds no CUDA device.
        """
        data = backend.to_device(self.data, device)
        if data is self.data:
            return self
        return Tensor._from_op(data, self.requires_grad)

    def detach(self) -> Tensor:
        """A tensor sharing this data, cut from the graph (``requires_grad=False``)."""
        return Tensor._from_op(self.data, False)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set ``requires_grad`` in place; only floating tensors can require grad."""
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"Only floating-point tensors can require gradients. Received: dtype={self.dtype}"
            )
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self) -> Tensor:
        """Keep ``grad`` on this non-leaf tensor during ``backward()`` (for inspection)."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad() on a tensor that does not require grad")
        if self._ctx is not None:  # a leaf keeps its gradient anyway
            self._ctx.retained = weakref.ref(self)
        return self

    def zero_grad(self) -> None:
        """Forget the accumulated gradient."""
        self.grad = None

    # ------------------------------------------------------------------ differentiation
    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        The graph is walked in reverse topological order without recursion, so arbitrarily
        deep graphs work. Unless ``retain_graph`` is true, every visited node's saved arrays
        are released afterwards and a second ``backward()`` through them raises.

        Args:
            grad: d(loss)/d(self); may be omitted (taken as 1) only for one-element tensors.
            retain_graph: keep the graph so ``backward()`` can be called through it again.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() called on a tensor that does not require grad: none of the tensors it "
                "was computed from has requires_grad=True (or it was computed under no_grad())"
            )
        xp = backend.get_array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a one-element (scalar) tensor; this one "
                    f"has shape {self.shape}. Pass grad= of the same shape, or reduce it first "
                    "(e.g. .sum() or .mean())."
                )
            grad = xp.ones_like(self.data)
            fresh = {id(grad)}
        else:
            grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise RuntimeError(
                    f"backward(grad) needs grad of the tensor's shape {self.shape}. "
                    f"Received: grad.shape={grad.shape}"
                )
            fresh = set()
        _run_backward(self, grad, retain_graph, fresh)

    def _accumulate(self, g: Any, owned: bool) -> None:
        if g.dtype != self.data.dtype:
            g = g.astype(self.data.dtype)
            owned = True
        if self.grad is None:
            self.grad = g if owned else g.copy()
        else:
            self.grad += g


def _topological_order(root: Any) -> list[Any]:
    """Graph nodes reachable from ``root`` (Functions and leaf tensors), each after its inputs."""
    order: list[Any] = []
    visited: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if isinstance(node, Tensor):
            continue
        if node.released:
            raise RuntimeError(
                f"Trying to backward through the graph a second time (the saved values of "
                f"{node.name} were freed by the first backward()). Pass retain_graph=True to "
                "the first call if you need to."
            )
        for parent in node.parents:
            if parent is not None and id(parent) not in visited:
                stack.append((parent, False))
    return order


def _run_backward(root: Tensor, grad: Any, retain_graph: bool, fresh: set[int]) -> None:
    # A gradient array may be handed to several tensors (Add passes grad_out to both inputs,
    # reshape returns a view). A leaf keeps it without copying only if nothing else can see it.
    handed: set[int] = set()

    def owned(g: Any) -> bool:
        ok = g.base is None and id(g) not in handed and (g is not grad or id(g) in fresh)
        handed.add(id(g))
        return ok

    start = root if root._ctx is None else root._ctx
    grads: dict[int, Any] = {id(start): grad}
    with grad_mode.no_grad():
        for node in reversed(_topological_order(start)):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if isinstance(node, Tensor):  # a leaf
                node._accumulate(g, owned(g))
                continue
            fn = node
            kept = fn.retained() if fn.retained is not None else None
            if kept is not None:
                kept._accumulate(g, False)
            # nothing but this frame reaches g's memory (g is not handed to another input nor
            # the caller's, and is no view of an array anyone else holds): backward may write
            # its result into it (Function.grad_donated)
            base = g.base
            fn.grad_donated = sys.getrefcount(g) == 2 and (
                base is None or (base.base is None and sys.getrefcount(base) == 3)
            )
            base = None
            if fn.saved_rebuilds:
                handles = fn.saved
                fn.saved = fn.rebuild_saved()
                input_grads = fn.backward(g)
                fn.saved = handles  # with retain_graph, rebuilt again by the next backward()
            else:
                input_grads = fn.backward(g)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for parent, ig in zip(fn.parents, input_grads):
                if parent is None or ig is None:
                    continue
                shape = parent.data.shape if isinstance(parent, Tensor) else parent.output_shape
                if ig.shape != shape:
                    raise RuntimeError(
                        f"{fn.name}.backward returned a gradient of shape {ig.shape} for an input "
                        f"of shape {shape}"
                    )
                key = id(parent)
                if key in grads:
                    grads[key] = grads[key] + ig
                else:
                    grads[key] = ig
            input_grads = ig = None  # so that the next node's g is referenced only by grads
            if not retain_graph:
                fn.__dict__.clear()
                fn.released = True
