"""The machinery under the ONNX exporter: a graph builder and the per-layer converter registry.

A *converter* turns one module into ONNX nodes::

    @register_onnx_converter(MyLayer)
    def _my_layer(ctx: ExportContext, m: MyLayer, x: str, call: LayerCall) -> str:
        w = ctx.graph.initializer(call.path + ".weight", m.weight.numpy())
        return ctx.graph.node("Mul", [x, w], call.path)

``x`` is the name of the ONNX tensor holding the layer's input and the return value the name
of its output. ``call`` carries the layer's dotted path and the input and output shapes seen
when the model ran on a probe batch, so converters know every dimension but the batch.
Containers convert their children with ``ctx.convert(child, x, path)``.

Converters are looked up by exact class: a subclass may change ``forward`` and needs its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcraft.nn.module import Module

__all__ = [
    "CONVERTERS",
    "ExportContext",
    "Graph",
    "LayerCall",
    "OnnxExportError",
    "register_onnx_converter",
    "require_onnx",
]


class OnnxExportError(ValueError):
    """A model, layer, option or preprocessor that cannot be written as ONNX (names the layer)."""


def require_onnx() -> Any:
    """The ``onnx`` package, or an ImportError naming the extra to install."""
    try:
        import onnx
    except ImportError as err:
        raise ImportError('ONNX export needs the onnx package: pip install "gradcraft[onnx]"') from err
    return onnx


@dataclass(frozen=True)
class LayerCall:
    """One call of a layer during the probe run.

    Attributes:
        path: the layer's dotted name from the exported model (``""`` for the model itself).
        in_shape: shape of its input (axis 0 is the batch, whose size means nothing).
        out_shape: shape of its output.
    """

    path: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]


Converter = Callable[["ExportContext", Any, str, LayerCall], str]
CONVERTERS: dict[type, Converter] = {}


def register_onnx_converter(*classes: type) -> Callable[[Converter], Converter]:
    """Decorator: use the function as the ONNX converter of these module classes."""

    def wrap(fn: Converter) -> Converter:
        for cls in classes:
            CONVERTERS[cls] = fn
        return fn

    return wrap


class Graph:
    """Nodes and initializers of an ONNX graph under construction (float32 weights).

    Args:
        opset: the default-domain opset the graph targets (some ops change with it).
    """

    def __init__(self, opset: int) -> None:
        onnx = require_onnx()
        self.helper = onnx.helper
        self._from_array = onnx.numpy_helper.from_array
        self.opset = opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._used: set[str] = set()

    def unique(self, hint: str) -> str:
        """A fresh tensor/node name based on ``hint``."""
        base = re.sub(r"[^A-Za-z0-9_.:/-]", "_", hint) or "t"
        name, k = base, 1
        while name in self._used:
            name, k = f"{base}_{k}", k + 1
        self._used.add(name)
        return name

    def initializer(self, hint: str, value: Any) -> str:
        """Add a constant; floating values become float32, integers int64."""
        arr = np.asarray(value)
        arr = arr.astype(np.float32) if arr.dtype.kind == "f" else arr.astype(np.int64)
        name = self.unique(hint)
        self.initializers.append(self._from_array(np.ascontiguousarray(arr).reshape(arr.shape), name))
        return name

    def scalar(self, hint: str, value: float) -> str:
        """A 0-d float32 constant."""
        return self.initializer(hint, np.float32(value))

    def node(self, op: str, inputs: Sequence[str], hint: str, **attrs: Any) -> str:
        """Append ``op(inputs)`` (``""`` for an omitted optional input); returns its output's name."""
        label = f"{hint}/{op}" if hint else op
        out = self.unique(label)
        self.nodes.append(self.helper.make_node(op, list(inputs), [out], name=self.unique(label), **attrs))
        return out

    def reduce(self, op: str, x: str, axes: Sequence[int], hint: str, keepdims: bool) -> str:
        """``ReduceMean`` / ``ReduceMax`` / …: ``axes`` an attribute up to opset 17, an input from 18."""
        if self.opset >= 18:
            axes_input = self.initializer(hint + ".axes", list(axes))
            return self.node(op, [x, axes_input], hint, keepdims=int(keepdims))
        return self.node(op, [x], hint, axes=list(axes), keepdims=int(keepdims))

    def reshape(self, x: str, shape: Sequence[int], hint: str) -> str:
        """Reshape with ONNX's rules (0 copies the input's dimension, -1 is inferred)."""
        return self.node("Reshape", [x, self.initializer(hint + ".shape", list(shape))], hint)

    def rename_output(self, old: str, new: str) -> None:
        """Give the tensor ``old`` (a node's output) the graph-output name ``new``."""
        for node in self.nodes:
            for seq in (node.input, node.output):
                for i, name in enumerate(seq):
                    if name == old:
                        seq[i] = new


class ExportContext:
    """What converters see: the graph and the shapes recorded for every layer call."""

    def __init__(self, graph: Graph, calls: dict[int, list[tuple[tuple[int, ...], tuple[int, ...]]]]) -> None:
        self.graph = graph
        self._calls = calls
        self._seen: dict[int, int] = {}

    @staticmethod
    def where(path: str, module: Module) -> str:
        """``"features.3 (Conv2d)"`` (``"the model (Net)"`` for the exported module itself)."""
        return f"{path or 'the model'} ({type(module).__name__})"

    def fail(self, call: LayerCall, module: Module, reason: str) -> OnnxExportError:
        """An error naming the layer, e.g. ``features.3 (BatchNorm2d): <reason>``."""
        return OnnxExportError(f"{self.where(call.path, module)}: {reason}")

    def convert(self, module: Module, x: str, path: str) -> str:
        """The output of ``module`` applied to the tensor ``x`` (dispatch on its exact class)."""
        fn = CONVERTERS.get(type(module))
        if fn is None:
            supported = ", ".join(sorted({c.__name__ for c in CONVERTERS}))
            raise OnnxExportError(
                f"{self.where(path, module)} has no ONNX export. Supported layers: {supported}"
            )
        if module._forward_hooks or module._forward_pre_hooks:
            raise OnnxExportError(
                f"{self.where(path, module)} has forward hooks, which an ONNX graph cannot run; "
                "remove them before exporting"
            )
        recorded = self._calls.get(id(module), [])
        k = self._seen.get(id(module), 0)
        if k >= len(recorded):
            raise OnnxExportError(
                f"{self.where(path, module)} was not called when the model ran on a probe batch, so "
                "its input shape is unknown; only layers that forward() calls can be exported"
            )
        self._seen[id(module)] = k + 1
        in_shape, out_shape = recorded[k]
        return fn(self, module, x, LayerCall(path, in_shape, out_shape))

    @staticmethod
    def child_path(path: str, name: str) -> str:
        return f"{path}.{name}" if path else name
