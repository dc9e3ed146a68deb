"""Export a gradcraft model to ONNX, for ONNX Runtime, TensorRT, OpenVINO, browsers, …

::

    from gradcraft.io import export_onnx

    export_onnx(model, "model.onnx", input_shape=(1, 28, 28))          # logits, input (N, 1, 28, 28)
    export_onnx(model, "model.onnx", (1, 28, 28), softmax=True,
                preprocessor=standardize, uint8_input=True)              # raw 8-bit pixels in

The graph computes what the model computes in evaluation mode (dropout off, batch norm on its
running statistics), built node by node with ``onnx.helper`` (see :mod:`gradcraft.io.onnx_layers`
for the layer ↦ ONNX table). Axis 0 of the input and output is a dynamic ``batch`` dimension;
the others are fixed by ``input_shape``. Weights are stored as float32.

How: the model first runs once on a probe batch of zeros with forward hooks that record every
layer call's input and output shapes (which also checks that ``input_shape`` fits the model);
then each layer's converter emits its nodes; finally ``onnx.checker.check_model(full_check=True)``
validates the graph, including ONNX's own shape inference.

Inputs as ``gradcraft predict`` sees them: the model of a recipe run expects *preprocessed*
inputs. ``preprocessor=`` folds a fitted ``Standardize`` / ``ChannelMean`` / ``MeanImage`` into
the graph (``Sub`` and ``Mul`` with the same float32 constants), so the graph takes pixels in
[0, 1]; ``uint8_input=True`` makes it take raw 8-bit pixels (``Cast``, then ·1/255 as the data
loader does).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import gradcraft
from gradcraft import backend
from gradcraft.autograd import no_grad
from gradcraft.autograd.tensor import Tensor
from gradcraft.io import onnx_layers
from gradcraft.io.checkpoint import atomic_write_bytes
from gradcraft.io.onnx_graph import (
    ExportContext,
    Graph,
    OnnxExportError,
    register_onnx_converter,
    require_onnx,
)
from gradcraft.nn.module import Module

__all__ = [
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "OnnxExportError",
    "export_onnx",
    "register_onnx_converter",
    "to_onnx",
]

DEFAULT_OPSET = 17
MIN_OPSET = 17
"""LayerNormalization, which the converters use, entered the default domain in opset 17."""


def _record_calls(model: Module, input_shape: tuple[int, ...]) -> dict[int, list[Any]]:
    """Run ``model`` in eval mode on a (2, *input_shape) batch of zeros; every layer call's
    (input shape, output shape), per module id, in call order."""
    calls: dict[int, list[Any]] = {}

    def hook(module: Module, args: tuple, out: Any) -> None:
        if args and isinstance(args[0], Tensor) and isinstance(out, Tensor):
            calls.setdefault(id(module), []).append((tuple(args[0].shape), tuple(out.shape)))

    params = [p for p in model.parameters() if p.dtype.kind == "f"]
    dtype = params[0].dtype if params else gradcraft.default_dtype()
    xp = backend.get_array_module(params[0].data) if params else np
    handles = [m.register_forward_hook(hook) for m in model.modules()]
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            model(Tensor(xp.zeros((2, *input_shape), dtype=dtype)))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return calls


def _check_opset(opset: int) -> None:
    onnx = require_onnx()
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise OnnxExportError(
            f"Expected an opset from {MIN_OPSET} to {newest} (the installed onnx's newest). "
            f"Received: opset={opset!r}"
        )


def to_onnx(
    model: Module,
    input_shape: Sequence[int],
    *,
    opset: int = DEFAULT_OPSET,
    softmax: bool = False,
    preprocessor: Any = None,
    uint8_input: bool = False,
    input_name: str = "input",
    output_name: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Any:
    """Build and check the ONNX model of ``model`` (in evaluation mode).

    Args:
        model: a gradcraft model made of exportable layers (see :mod:`gradcraft.io.onnx_layers`).
        input_shape: one example's shape, e.g. ``(C, H, W)``; the graph's input is
            ``(batch, *input_shape)`` with a dynamic batch.
        opset: ONNX opset of the default domain (17 up to the installed onnx's newest).
        softmax: append ``Softmax`` over the last axis (the output then is probabilities).
        preprocessor: a fitted ``Standardize``, ``ChannelMean`` or ``MeanImage`` to apply first.
        uint8_input: take uint8 pixels and scale them by 1/255 first (as the data loader does).
        input_name: the graph input's name.
        output_name: the graph output's name (default ``"probabilities"`` with ``softmax``,
            else ``"logits"``).
        metadata: extra string key/values stored in the model's ``metadata_props``.

    Returns:
        An ``onnx.ModelProto`` that passed ``onnx.checker.check_model(full_check=True)``.

    Raises:
        OnnxExportError: a layer without an ONNX converter (named by its path, e.g.
            ``layers.3 (FractionalMaxPool2d) has no ONNX export``), a layer setting the graph
            cannot express, a preprocessor that cannot be folded, or an invalid opset.
        LayerError: ``input_shape`` does not fit the model (names the failing layer).
        ImportError: onnx is not installed.
    """
    onnx = require_onnx()
    helper = onnx.helper
    _check_opset(opset)
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise OnnxExportError(
            f"Expected a non-empty input_shape of positive sizes. Received: input_shape={input_shape!r}"
        )
    calls = _record_calls(model, shape)
    graph = Graph(opset)
    x = input_name
    graph.unique(input_name)
    if uint8_input:
        x = graph.node("Cast", [x], "input", to=onnx.TensorProto.FLOAT)
        x = graph.node("Mul", [x, graph.scalar("input.scale", np.float32(1.0 / 255.0))], "input")
    if preprocessor is not None:
        x = onnx_layers.fold_preprocessing(graph, preprocessor, x, 1 + len(shape))
    out = ExportContext(graph, calls).convert(model, x, "")
    if softmax:
        out = graph.node("Softmax", [out], "softmax", axis=-1)
    name = output_name or ("probabilities" if softmax else "logits")
    if out == input_name or out in {t.name for t in graph.initializers}:
        out = graph.node("Identity", [out], "output")
    graph.rename_output(out, name)
    out_shape = calls[id(model)][0][1]
    in_type = onnx.TensorProto.UINT8 if uint8_input else onnx.TensorProto.FLOAT
    proto_graph = helper.make_graph(
        graph.nodes,
        type(model).__name__,
        [helper.make_tensor_value_info(input_name, in_type, ["batch", *shape])],
        [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["batch", *out_shape[1:]])],
        initializer=graph.initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(
        proto_graph,
        opset_imports=opsets,
        producer_name="gradcraft",
        producer_version=gradcraft.__version__,
        ir_version=helper.find_min_ir_version_for(opsets),
    )
    if metadata:
        helper.set_model_props(proto, {str(k): str(v) for k, v in metadata.items()})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(
    model: Module,
    path: str | os.PathLike[str],
    input_shape: Sequence[int],
    **options: Any,
) -> Path:
    """Write ``to_onnx(model, input_shape, **options)`` to ``path`` atomically; returns ``path``.

    The keyword options are those of :func:`to_onnx` (``opset``, ``softmax``, ``preprocessor``,
    ``uint8_input``, ``input_name``, ``output_name``, ``metadata``).
    """
    proto = to_onnx(model, input_shape, **options)
    return atomic_write_bytes(path, proto.SerializeToString())
