"""Shape ops: reshape, permute, expand, indexing, concatenate, stack, split, pad.

None of these changes values, so each backward just routes the gradient back to where each
element came from (indexing scatter-adds, so repeated indices accumulate).
"""

from __future__ import annotations

from typing import Any

from gradcraft.autograd.function import Function
from gradcraft.autograd.tensor import Tensor
from gradcraft.backend import get_array_module
from gradcraft.ops._util import normalize_axis, unbroadcast

__all__ = [
    "concatenate",
    "expand",
    "flatten",
    "pad",
    "permute",
    "reshape",
    "split",
    "squeeze",
    "stack",
    "transpose",
    "unsqueeze",
]


class Reshape(Function):
    """y = x viewed with another shape;  dx = g reshaped back."""

    def forward(self, x: Any, shape: tuple[int, ...] = ()) -> Any:
        self.shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(
                f"cannot reshape a tensor of shape {x.shape} ({x.size} elements) into {tuple(shape)}"
            ) from None

    def backward(self, g: Any) -> Any:
        return g.reshape(self.shape)


class Permute(Function):
    """y = x with axes reordered;  dx = g with the inverse permutation."""

    def forward(self, x: Any, axes: tuple[int, ...] = ()) -> Any:
        if sorted(a % x.ndim for a in axes) != list(range(x.ndim)):
            raise ValueError(f"permute axes {tuple(axes)} do not match a tensor of shape {x.shape}")
        self.axes = axes
        return x.transpose(axes)

    def backward(self, g: Any) -> Any:
        xp = get_array_module(g)
        return g.transpose(xp.argsort(xp.asarray(self.axes) % g.ndim).tolist())


class Expand(Function):
    """y = x broadcast to ``shape``;  dx = g summed over the broadcast axes."""

    def forward(self, x: Any, shape: tuple[int, ...] = ()) -> Any:
        self.shape = x.shape
        shape = tuple(x.shape[i - (len(shape) - x.ndim)] if n == -1 else n for i, n in enumerate(shape))
        return get_array_module(x).broadcast_to(x, shape)

    def backward(self, g: Any) -> Any:
        return unbroadcast(g, self.shape)


def _is_basic_index(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, slice)) or i is None or i is Ellipsis for i in items)


class GetItem(Function):
    """y = x[index] (basic or advanced);  dx = zeros with g scatter-added at ``index``."""

    def forward(self, x: Any, index: Any = None) -> Any:
        self.shape, self.dtype, self.index = x.shape, x.dtype, index
        return x[index]

    def backward(self, g: Any) -> Any:
        xp = get_array_module(g)
        dx = xp.zeros(self.shape, dtype=g.dtype)
        if _is_basic_index(self.index):
            dx[self.index] = g
        else:
            xp.add.at(dx, self.index, g)
        return dx


class Concatenate(Function):
    """y = [x₁, x₂, …] joined along ``axis``;  dxᵢ = the matching slice of g."""

    def forward(self, *xs: Any, axis: int = 0) -> Any:
        xp = get_array_module(*xs)
        self.axis = axis
        self.sizes = [x.shape[axis] for x in xs]
        return xp.concatenate(xs, axis=axis)

    def backward(self, g: Any) -> tuple[Any, ...]:
        xp = get_array_module(g)
        bounds = xp.cumsum(xp.asarray(self.sizes[:-1])).tolist() if len(self.sizes) > 1 else []
        return tuple(xp.split(g, bounds, axis=self.axis))


class Stack(Function):
    """y = [x₁, x₂, …] stacked on a new ``axis``;  dxᵢ = g taken at index i of that axis."""

    def forward(self, *xs: Any, axis: int = 0) -> Any:
        self.axis = axis
        return get_array_module(*xs).stack(xs, axis=axis)

    def backward(self, g: Any) -> tuple[Any, ...]:
        xp = get_array_module(g)
        return tuple(xp.take(g, i, axis=self.axis) for i in range(g.shape[self.axis]))


class Pad(Function):
    """Constant padding; ``pad_width`` as in ``numpy.pad``: ((before, after), …) per axis."""

    def forward(self, x: Any, pad_width: Any = (), value: float = 0.0) -> Any:
        xp = get_array_module(x)
        widths = xp.broadcast_to(xp.asarray(pad_width, dtype=int), (x.ndim, 2)).tolist()
        if any(w < 0 for pair in widths for w in pair):
            raise ValueError(f"pad widths must be non-negative. Received: pad_width={pad_width}")
        self.slices = tuple(slice(b, b + n) for (b, _), n in zip(widths, x.shape))
        return xp.pad(x, widths, mode="constant", constant_values=value)

    def backward(self, g: Any) -> Any:
        return g[self.slices]


def reshape(x: Tensor, *shape: Any) -> Tensor:
    """``x.reshape(2, -1)`` or ``x.reshape((2, -1))``."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Reshape.apply(x, shape=shape)


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge axes ``start_dim..end_dim`` into one (``flatten(x, 1)`` keeps the batch axis)."""
    if x.ndim == 0:
        return reshape(x, (1,))
    s, e = start_dim % x.ndim, end_dim % x.ndim
    shape = x.shape[:s] + (-1,) + x.shape[e + 1 :] if s <= e else x.shape
    if 0 in x.shape[s : e + 1]:
        shape = x.shape[:s] + (0,) + x.shape[e + 1 :]
    return reshape(x, shape)


def permute(x: Tensor, *axes: Any) -> Tensor:
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return Permute.apply(x, axes=tuple(axes))


def transpose(x: Tensor, axis0: int = -2, axis1: int = -1) -> Tensor:
    """Swap two axes (the last two by default)."""
    axes = list(range(x.ndim))
    axes[axis0], axes[axis1] = axes[axis1], axes[axis0]
    return Permute.apply(x, axes=tuple(axes))


def squeeze(x: Tensor, axis: Any = None) -> Tensor:
    """Drop axes of length 1 (all of them, or those in ``axis`` that have length 1)."""
    axes = normalize_axis(axis, x.ndim)
    shape = tuple(n for i, n in enumerate(x.shape) if not (i in axes and n == 1))
    return reshape(x, shape)


def unsqueeze(x: Tensor, axis: int) -> Tensor:
    """Insert an axis of length 1 at ``axis`` (negative counts from the end of the result)."""
    ndim = x.ndim + 1
    if not -ndim <= axis < ndim:
        raise ValueError(f"unsqueeze axis {axis} is out of range for a result with {ndim} dimensions")
    axis %= ndim
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


def expand(x: Tensor, *shape: Any) -> Tensor:
    """Broadcast ``x`` to ``shape`` without copying (-1 keeps a dimension)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Expand.apply(x, shape=tuple(shape))


def getitem(x: Tensor, index: Any) -> Tensor:
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    elif isinstance(index, list):
        index = get_array_module(x.data).asarray(index)
    return GetItem.apply(x, index=index)


def concatenate(tensors: Any, axis: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concatenate() needs at least one tensor")
    return Concatenate.apply(*tensors, axis=axis)


def stack(tensors: Any, axis: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack() needs at least one tensor")
    return Stack.apply(*tensors, axis=axis)


def split(x: Tensor, split_size_or_sections: Any, axis: int = 0) -> list[Tensor]:
    """Split into pieces of ``split_size`` (an int) or of the listed sizes (as torch.split)."""
    n = x.shape[axis]
    if isinstance(split_size_or_sections, int):
        if split_size_or_sections <= 0:
            raise ValueError(f"split size must be positive. Received: {split_size_or_sections}")
        sizes = [min(split_size_or_sections, n - s) for s in range(0, n, split_size_or_sections)]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise ValueError(f"split sizes {sizes} do not add up to the axis length {n}")
    out, start = [], 0
    ax = axis % x.ndim
    for size in sizes:
        index = (slice(None),) * ax + (slice(start, start + size),)
        out.append(getitem(x, index))
        start += size
    return out


def pad(x: Tensor, pad_width: Any, value: float = 0.0) -> Tensor:
    """Constant padding with NumPy's ``pad_width`` convention."""
    return Pad.apply(x, pad_width=pad_width, value=value)
