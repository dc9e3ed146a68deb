"""``Module`` and ``Parameter``: the building blocks of every model.

A :class:`Module` owns :class:`Parameter` s (learnable tensors), buffers (state that is saved
but not learned, e.g. batch norm's running statistics) and submodules, assigned as plain
attributes in ``__init__``::

    class MLP(Module):
        def __init__(self):
            super().__init__()
            self.fc1 = Linear(784, 128)      # submodule -> names "fc1.weight", "fc1.bias"
            self.fc2 = Linear(128, 10)

        def forward(self, x):
            return self.fc2(self.fc1(x).relu())

Calling a module (``model(x)``) runs its forward pre-hooks, :meth:`Module.forward` and its
forward hooks. Names in :meth:`Module.state_dict` are PyTorch's dotted names
(``features.0.weight``, ``bn.running_mean``), so weights can be exchanged with PyTorch.

When ``forward`` raises a ``ValueError`` (a shape error), the error is re-raised as a
:class:`LayerError` that names the failing layer's path from the outermost module called and
its ``repr``, e.g. ``in layer 'features.3' (Linear(in_features=128, out_features=10,
bias=True)): Expected input with last dimension 128. Received: shape=(32, 64)``.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from gradcraft import backend
from gradcraft.autograd.tensor import Tensor

__all__ = ["IncompatibleKeys", "LayerError", "Module", "Parameter", "RemovableHandle", "StateDictError"]


class Parameter(Tensor):
    """A tensor that is a learnable parameter of a :class:`Module` (``requires_grad=True``).

    Assigning a Parameter as a module attribute registers it, so it appears in
    :meth:`Module.parameters` and :meth:`Module.state_dict`.

    Args:
        data: array-like or Tensor. Floating arrays keep their dtype; Python numbers, lists
            and non-floating arrays become :func:`gradcraft.backend.default_dtype`.
        requires_grad: whether the optimizer should train it (``False`` freezes it).
    """

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if data is None:
            data = backend.get_array_module().empty((0,), dtype=backend.default_dtype())
        if isinstance(data, Tensor):
            data = data.data
        arr = backend.as_array(data)
        if arr.dtype.kind != "f":
            arr = arr.astype(backend.default_dtype())
        super().__init__(arr, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class LayerError(ValueError):
    """A ``ValueError`` raised inside a module's ``forward``, annotated with the layer's path.

    Attributes:
        path: dotted name of the failing layer relative to the outermost module called
            (``""`` when that module itself failed).
        layer: the module whose ``forward`` raised.
        reason: the original message.
    """

    def __init__(self, layer: Module, reason: str) -> None:
        self.layer = layer
        self.reason = reason
        self.path_parts: list[str] = []
        self._current: Module = layer
        super().__init__(self._render())

    @property
    def path(self) -> str:
        return ".".join(self.path_parts)

    def _render(self) -> str:
        desc = self.layer._short_repr()
        if self.path_parts:
            return f"in layer '{self.path}' ({desc}): {self.reason}"
        return f"in {desc}: {self.reason}"

    def _enter_parent(self, parent: Module) -> None:
        for name, child in parent._modules.items():
            if child is self._current:
                self.path_parts.insert(0, name)
                break
        else:  # called, but not registered as a submodule: keep its class name in the path
            if self._current is not parent:
                self.path_parts.insert(0, f"<{type(self._current).__name__}>")
        self._current = parent
        self.args = (self._render(),)


class StateDictError(RuntimeError):
    """Raised by :meth:`Module.load_state_dict` for missing, unexpected or wrong-shaped keys."""


class IncompatibleKeys(NamedTuple):
    """What :meth:`Module.load_state_dict` could not match (empty lists when strict)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class RemovableHandle:
    """Returned by the ``register_*_hook`` methods; ``handle.remove()`` unregisters the hook.

    Also a context manager: ``with model.register_forward_hook(h): model(x)``.
    """

    _next_id = itertools.count()

    def __init__(self, hooks: dict[int, Any]) -> None:
        self._hooks = hooks
        self.id = next(RemovableHandle._next_id)

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _to_numpy(value: Any) -> np.ndarray:
    """A NumPy view/copy of an array, gradcraft Tensor or PyTorch tensor."""
    if isinstance(value, Tensor):
        return np.asarray(value.numpy())
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor
        return value.detach().cpu().numpy()
    if hasattr(value, "get") and type(value).__module__.startswith("cupy"):
        return value.get()
    return np.asarray(value)


def _addindent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


class Module:
    """Base class of all layers and models (PyTorch's ``nn.Module`` API).

    Subclasses call ``super().__init__()`` first, assign Parameters, submodules and buffers
    as attributes, and implement :meth:`forward`. ``training`` is ``True`` after
    construction; :meth:`eval` switches it (and every submodule's) off.
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())

    # ------------------------------------------------------------------ forward
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The computation; every subclass must override it."""
        raise NotImplementedError(f"Module [{type(self).__name__}] is missing the required forward() method")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        pre_hooks = self.__dict__.get("_forward_pre_hooks")
        if pre_hooks is None:
            raise RuntimeError(
                f"{type(self).__name__}.__init__ did not call super().__init__(); "
                "call it first in every Module subclass"
            )
        if pre_hooks:
            for hook in tuple(pre_hooks.values()):
                result = hook(self, args)
                if result is not None:
                    args = result if isinstance(result, tuple) else (result,)
        try:
            out = self.forward(*args, **kwargs)
        except LayerError as err:
            err._enter_parent(self)
            raise
        except ValueError as err:
            raise LayerError(self, str(err)) from err
        hooks = self._forward_hooks
        if hooks:
            for hook in tuple(hooks.values()):
                result = hook(self, args, out)
                if result is not None:
                    out = result
        return out

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        params = d.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError(
                    f"Cannot assign parameters before Module.__init__() call. Received: name={name!r}"
                )
            self._forget(name)
            params[name] = value
        elif isinstance(value, Module):
            if params is None:
                raise AttributeError(
                    f"Cannot assign a submodule before Module.__init__() call. Received: name={name!r}"
                )
            self._forget(name)
            d["_modules"][name] = value
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(
                    f"Expected a Parameter or None for registered parameter '{name}'. "
                    f"Received: type={type(value).__name__}"
                )
            params[name] = None
        elif params is not None and name in d["_modules"]:
            if value is not None:
                raise TypeError(
                    f"Expected a Module or None for registered submodule '{name}'. "
                    f"Received: type={type(value).__name__}"
                )
            d["_modules"][name] = None
        elif params is not None and name in d["_buffers"]:
            d["_buffers"][name] = None if value is None else self._as_buffer(name, value)
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            items = d.get(store)
            if items is not None and name in items:
                return items[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if name in d.get(store, ()):
                del d[store][name]
                d["_non_persistent_buffers"].discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self) -> list[str]:
        keys = list(super().__dir__())
        keys += list(self._parameters) + list(self._buffers) + list(self._modules)
        return sorted(set(keys))

    def _forget(self, name: str) -> None:
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            d[store].pop(name, None)
        d["_non_persistent_buffers"].discard(name)
        d.pop(name, None)

    @staticmethod
    def _as_buffer(name: str, value: Any) -> Tensor:
        if isinstance(value, Parameter):
            raise TypeError(f"Expected a tensor or array for buffer '{name}'. Received: a Parameter")
        if isinstance(value, Tensor):
            return value
        if isinstance(value, (int, float, bool, list, tuple)) or hasattr(value, "shape"):
            return Tensor(value)
        raise TypeError(
            f"Expected a tensor, array or None for buffer '{name}'. Received: type={type(value).__name__}"
        )

    def _check_name(self, name: Any, kind: str) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"Cannot register a {kind} before Module.__init__() call. Received: name={name!r}"
            )
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"Expected a non-empty {kind} name without '.'. Received: name={name!r}")
        if hasattr(type(self), name) or (
            name in self.__dict__
            and name not in self._parameters
            and name not in self._buffers
            and name not in self._modules
        ):
            raise KeyError(
                f"Expected a {kind} name not already used by an attribute. Received: name={name!r}"
            )

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or a ``None`` placeholder, e.g. ``bias=False``) under ``name``."""
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"Expected a Parameter or None for '{name}'. Received: type={type(param).__name__}"
            )
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Any, persistent: bool = True) -> None:
        """Add a buffer: state saved in :meth:`state_dict` (if ``persistent``) but not trained.

        Args:
            name: attribute name (e.g. ``"running_mean"``).
            tensor: a Tensor, an array (wrapped in a Tensor, dtype kept) or ``None``.
            persistent: whether it is part of :meth:`state_dict`.
        """
        self._check_name(name, "buffer")
        self._forget(name)
        self._buffers[name] = None if tensor is None else self._as_buffer(name, tensor)
        if not persistent:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a submodule under ``name`` (names like ``"0"`` are allowed, as in Sequential)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"Expected a Module or None for '{name}'. Received: type={type(module).__name__}")
        self._check_name(name, "submodule")
        self._forget(name)
        self._modules[name] = module

    register_module = add_module

    # ------------------------------------------------------------------ hooks
    def register_forward_hook(self, hook: Callable[[Module, tuple, Any], Any]) -> RemovableHandle:
        """Call ``hook(module, inputs, output)`` after every forward; a non-None result replaces
        the output. Returns a handle whose ``remove()`` unregisters it."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def register_forward_pre_hook(self, hook: Callable[[Module, tuple], Any]) -> RemovableHandle:
        """Call ``hook(module, inputs)`` before every forward; a non-None result replaces the
        inputs (a tuple, or a single value wrapped into one)."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    # ------------------------------------------------------------------ traversal
    def named_modules(
        self, memo: set[int] | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """``(dotted name, module)`` for this module (name ``""``) and every descendant,
        depth first, each module once unless ``remove_duplicate=False``."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            sub = f"{prefix}.{name}" if prefix else name
            yield from module.named_modules(memo, sub, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """``(name, module)`` for the direct submodules."""
        seen: set[int] = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def _named_members(self, store: str, prefix: str, recurse: bool, remove_duplicate: bool) -> Iterator:
        seen: set[int] = set()
        mods = (
            self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
            if recurse
            else [(prefix, self)]
        )
        for mod_prefix, module in mods:
            for name, value in module.__dict__[store].items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), value

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """``(dotted name, parameter)`` pairs; a parameter shared by two layers appears once."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """Every parameter of this module (and of its submodules when ``recurse``), once each."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Tensor]]:
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str) -> Module:
        """The submodule at dotted path ``target`` (``""`` is this module)."""
        module: Module = self
        if not target:
            return module
        walked: list[str] = []
        for part in target.split("."):
            child = module._modules.get(part)
            if child is None:
                where = ".".join(walked) or "the root"
                raise AttributeError(
                    f"Expected a submodule named '{part}' in {where} ({type(module).__name__}). "
                    f"Received: target={target!r}; available: {sorted(module._modules)}"
                )
            module = child
            walked.append(part)
        return module

    def get_parameter(self, target: str) -> Parameter:
        """The parameter at dotted path ``target`` (e.g. ``"features.0.weight"``)."""
        mod_path, _, name = target.rpartition(".")
        module = self.get_submodule(mod_path)
        param = module._parameters.get(name)
        if param is None:
            raise AttributeError(
                f"Expected a parameter named '{name}' in {type(module).__name__}. Received: target={target!r}"
            )
        return param

    # ------------------------------------------------------------------ modes and grads
    def train(self, mode: bool = True) -> Module:
        """Set training mode (dropout active, batch norm uses batch statistics) recursively."""
        if not isinstance(mode, bool):
            raise ValueError(f"Expected a bool for training mode. Received: mode={mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """Set evaluation mode (``train(False)``): dropout off, batch norm uses running stats."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (``False``) or unfreeze every parameter."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget accumulated gradients (``grad = None``; zero-filled if ``set_to_none=False``)."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Total number of scalar parameters (shared ones counted once)."""
        return int(sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only))

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every submodule (children first) and then on this module.

        Typical use: ``model.apply(init_weights)``.
        """
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def _apply(self, fn: Callable[[Any], Any]) -> Module:
        """Replace every parameter's and buffer's array by ``fn(array)`` in place (identity of
        the Parameter objects is kept, so optimizers still hold them)."""
        for module in self.modules():
            for p in module._parameters.values():
                if p is None:
                    continue
                p.data = fn(p.data)
                if p.grad is not None:
                    p.grad = fn(p.grad)
            for b in module._buffers.values():
                if b is not None:
                    b.data = fn(b.data)
        return self

    def to(self, target: Any = None, *, device: Any = None, dtype: Any = None) -> Module:
        """Move parameters and buffers to a device and/or cast floating ones to a dtype, in
        place: ``model.to("cuda")``, ``model.to(np.float64)``, ``model.to(device="cpu",
        dtype="float32")``. Integer buffers such as ``num_batches_tracked`` keep their dtype.

        Moving to where the arrays already are is a no-op. Move a model before building its
        optimizer (whose flat buffers stay where the parameters were), as in PyTorch.

        Raises:
            ValueError: for a non-floating dtype or an unknown device name.
            ImportError: ``to("cuda")`` without CuPy (``pip install 'gradcraft[gpu]'``).
            RuntimeError: ``to("cuda")`` when CuPy finds no CUDA device.
        """
        if target is not None:
            if backend.is_device(target):
                device = target
            else:
                dtype = target
        if dtype is not None:
            dt = np.dtype(dtype)
            if dt.kind != "f":
                raise ValueError(f"Expected a floating dtype. Received: dtype={dt}")
            self._apply(lambda a: a.astype(dt, copy=False) if a.dtype.kind == "f" else a)
        if device is not None:
            self._apply(lambda a: backend.to_device(a, device))
        return self

    def double(self) -> Module:
        """Cast floating parameters and buffers to float64."""
        return self.to(np.float64)

    def float(self) -> Module:
        """Cast floating parameters and buffers to float32."""
        return self.to(np.float32)

    # ------------------------------------------------------------------ state
    def state_dict(self, prefix: str = "", keep_vars: bool = False) -> OrderedDict[str, Any]:
        """Name → NumPy array for every parameter and persistent buffer.

        Order and names follow PyTorch: each module's own parameters, then its buffers, then
        its children's, with dotted names (``features.0.weight``, ``bn.num_batches_tracked``).
        Arrays are copies (a snapshot that later training does not change) unless
        ``keep_vars``, which returns the Parameter / buffer tensors themselves.
        """
        out: OrderedDict[str, Any] = OrderedDict()
        self._save_to(out, prefix, keep_vars)
        return out

    def _save_to(self, out: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        for name, p in self._parameters.items():
            if p is not None:
                out[prefix + name] = p if keep_vars else np.array(p.numpy(), copy=True)
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                out[prefix + name] = b if keep_vars else np.array(b.numpy(), copy=True)
        for name, m in self._modules.items():
            if m is not None:
                m._save_to(out, f"{prefix}{name}.", keep_vars)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy arrays from ``state_dict`` into this module's parameters and buffers in place.

        Values may be NumPy arrays, gradcraft Tensors or PyTorch tensors; they are cast to the
        existing dtype. Nothing is copied unless every key checks out.

        Args:
            state_dict: name → array, as returned by :meth:`state_dict`.
            strict: when true, missing and unexpected keys are errors; shape mismatches are
                always errors.

        Returns:
            ``IncompatibleKeys(missing_keys, unexpected_keys)``.

        Raises:
            StateDictError: naming every missing, unexpected and wrong-shaped key (with the
                model's and the state dict's shapes).
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"Expected a mapping of name -> array. Received: type={type(state_dict).__name__}"
            )
        targets = self.state_dict(keep_vars=True)
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        mismatched: list[str] = []
        values: dict[str, np.ndarray] = {}
        for key, target in targets.items():
            if key not in state_dict:
                continue
            value = _to_numpy(state_dict[key])
            if tuple(value.shape) != tuple(target.shape):
                mismatched.append(
                    f"size mismatch for '{key}': Expected shape {tuple(target.shape)} (in the model). "
                    f"Received: shape={tuple(value.shape)} (in the state dict)"
                )
            else:
                values[key] = value
        problems: list[str] = []
        if strict and missing:
            problems.append("Missing key(s) in state_dict: " + ", ".join(f"'{k}'" for k in missing))
        if strict and unexpected:
            problems.append("Unexpected key(s) in state_dict: " + ", ".join(f"'{k}'" for k in unexpected))
        problems += mismatched
        if problems:
            raise StateDictError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(problems)
            )
        for key, value in values.items():
            target = targets[key]
            xp = backend.get_array_module(target.data)
            target.data[...] = xp.asarray(value, dtype=target.data.dtype)
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        """The text inside the parentheses of this module's repr (override in layers)."""
        return ""

    def _short_repr(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def __repr__(self) -> str:
        lines = []
        extra = self.extra_repr()
        if extra:
            lines.extend(extra.split("\n"))
        for name, module in self._modules.items():
            body = _addindent(repr(module), 2)
            lines.append(f"({name}): {body}")
        main = type(self).__name__ + "("
        if lines:
            if len(lines) == 1 and not self._modules:
                main += lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"
