"""Containers of modules: ``Sequential``, ``ModuleList``, ``ModuleDict``; and the trivial
shape layers ``Identity`` and ``Flatten``.

Submodules of a container are named by position (``"0"``, ``"1"``, …) or by key, so a
``Sequential`` inside attribute ``features`` gives state-dict names like
``features.0.weight``, as in PyTorch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, overload

from gradcraft.autograd.tensor import Tensor
from gradcraft.nn.fusion import fused_call
from gradcraft.nn.module import Module
from gradcraft.ops.shape import flatten, reshape

__all__ = ["Flatten", "Identity", "ModuleDict", "ModuleList", "Sequential", "Unflatten"]


def _check_module(value: Any, where: str) -> Module:
    if not isinstance(value, Module):
        raise TypeError(f"Expected a Module in {where}. Received: type={type(value).__name__}")
    return value


def _index(idx: int, n: int, where: str) -> int:
    if not isinstance(idx, int):
        raise TypeError(f"Expected an int or slice index into {where}. Received: index={idx!r}")
    if not -n <= idx < n:
        raise IndexError(f"Expected an index in [-{n}, {n}) for {where} of length {n}. Received: index={idx}")
    return idx % n


class Sequential(Module):
    """Modules applied one after another: ``y = m_k(… m_2(m_1(x)))``.

    ``Sequential(m1, m2, …)`` names the layers ``"0"``, ``"1"``, …;
    ``Sequential(OrderedDict(conv=…, relu=…))`` uses the given names. Supports ``len``,
    iteration, integer indexing, slicing (a new ``Sequential`` sharing the layers and keeping
    their names), ``append``, ``insert``, ``extend`` and ``del``.

    A ``Linear`` or a batch norm directly followed by a ``ReLU`` runs as one fused Function,
    with the same results (:mod:`gradcraft.nn.fusion`, which says when a pair is left alone).
    """

    def __init__(self, *modules: Any) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], Mapping):
            for name, module in modules[0].items():
                self.add_module(str(name), _check_module(module, "Sequential"))
        else:
            for i, module in enumerate(modules):
                self.add_module(str(i), _check_module(module, "Sequential"))

    def forward(self, x: Any) -> Any:
        layers = list(self._modules.values())
        i, n = 0, len(layers)
        while i < n:
            layer = layers[i]
            fused = fused_call(layer, layers[i + 1]) if i + 1 < n else None
            if fused is not None:
                x = fused(layer, x)
                i += 2
            else:
                x = layer(x)
                i += 1
        return x

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    @overload
    def __getitem__(self, idx: int) -> Module: ...

    @overload
    def __getitem__(self, idx: slice) -> Sequential: ...

    def __getitem__(self, idx: int | slice) -> Module | Sequential:
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        return items[_index(idx, len(items), "Sequential")][1]

    def __setitem__(self, idx: int, module: Module) -> None:
        key = list(self._modules)[_index(idx, len(self), "Sequential")]
        self._modules[key] = _check_module(module, "Sequential")

    def __delitem__(self, idx: int | slice) -> None:
        keys = list(self._modules)
        doomed = keys[idx] if isinstance(idx, slice) else [keys[_index(idx, len(keys), "Sequential")]]
        for key in doomed:
            del self._modules[key]

    def _next_name(self) -> str:
        n = len(self._modules)
        while str(n) in self._modules:
            n += 1
        return str(n)

    def append(self, module: Module) -> Sequential:
        """Add ``module`` at the end (named by the next free position)."""
        self.add_module(self._next_name(), _check_module(module, "Sequential.append"))
        return self

    def extend(self, modules: Iterable[Module]) -> Sequential:
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> Sequential:
        """Insert ``module`` before position ``index``; layers are renamed ``"0"``…``"n"``."""
        _check_module(module, "Sequential.insert")
        mods = list(self._modules.values())
        n = len(mods)
        if not -n <= index <= n:
            raise IndexError(f"Expected an index in [-{n}, {n}] for insert. Received: index={index}")
        mods.insert(index % (n + 1) if index < 0 else index, module)
        self._modules.clear()
        for i, m in enumerate(mods):
            self._modules[str(i)] = m
        return self


class ModuleList(Module):
    """A list of modules registered as submodules ``"0"``, ``"1"``, … (no ``forward``)."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, idx: int | slice) -> Any:
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(mods[idx])
        return mods[_index(idx, len(mods), "ModuleList")]

    def __setitem__(self, idx: int, module: Module) -> None:
        i = _index(idx, len(self), "ModuleList")
        self._modules[str(i)] = _check_module(module, "ModuleList")

    def __delitem__(self, idx: int | slice) -> None:
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            del mods[idx]
        else:
            del mods[_index(idx, len(mods), "ModuleList")]
        self._modules.clear()
        for i, m in enumerate(mods):
            self._modules[str(i)] = m

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self)), _check_module(module, "ModuleList.append"))
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        mods = list(self._modules.values())
        mods.insert(index, _check_module(module, "ModuleList.insert"))
        self._modules.clear()
        for i, m in enumerate(mods):
            self._modules[str(i)] = m

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("ModuleList has no forward(); iterate over it and call the modules")


class ModuleDict(Module):
    """An ordered dict of modules registered as submodules under their keys."""

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: object) -> bool:
        return key in self._modules

    def __getitem__(self, key: str) -> Module:
        if key not in self._modules:
            raise KeyError(f"Expected one of the keys {list(self._modules)}. Received: key={key!r}")
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, _check_module(module, "ModuleDict"))

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def keys(self) -> Iterable[str]:
        return self._modules.keys()

    def values(self) -> Iterable[Module]:
        return self._modules.values()

    def items(self) -> Iterable[tuple[str, Module]]:
        return self._modules.items()

    def pop(self, key: str) -> Module:
        module = self[key]
        del self._modules[key]
        return module

    def clear(self) -> None:
        self._modules.clear()

    def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
        items = modules.items() if isinstance(modules, Mapping) else modules
        for key, module in items:
            self[key] = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("ModuleDict has no forward(); look modules up by key and call them")


class Identity(Module):
    """y = x (a placeholder, e.g. for a removed classifier head). Accepts and ignores any
    constructor arguments, as PyTorch's does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, x: Any) -> Any:
        return x


class Flatten(Module):
    """Flatten dimensions ``start_dim`` … ``end_dim`` into one: (N, C, H, W) → (N, C·H·W)
    with the defaults ``start_dim=1, end_dim=-1`` (the batch axis is kept)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x: Tensor) -> Tensor:
        return flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Expand dimension ``dim`` into ``unflattened_size``: (N, 784) → (N, 1, 28, 28) with
    ``Unflatten(1, (1, 28, 28))``."""

    def __init__(self, dim: int, unflattened_size: tuple[int, ...]) -> None:
        super().__init__()
        self.dim = dim
        self.unflattened_size = tuple(int(n) for n in unflattened_size)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        d = self.dim % len(shape)
        known = 1
        for n in self.unflattened_size:
            if n != -1:
                known *= n
        if (-1 not in self.unflattened_size and known != shape[d]) or shape[d] % max(known, 1):
            raise ValueError(
                f"Expected dimension {self.dim} of size {known} to unflatten into {self.unflattened_size}. "
                f"Received: shape={tuple(shape)}"
            )
        return reshape(x, (*shape[:d], *self.unflattened_size, *shape[d + 1 :]))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
