"""ONNX converters for gradcraft's layers (inference behaviour: what ``model.eval()`` computes).

=====================================  ==========================================================
layer                                  ONNX
=====================================  ==========================================================
``Linear``, ``DropConnect``            ``Gemm`` (``MatMul`` + ``Add`` for inputs of rank > 2);
                                       DropConnect's vanilla mode scales W by 1 − p
``Maxout``                             ``Gemm`` → ``Reshape`` (…, out, pieces) → ``ReduceMax``
``Conv2d``                             ``Conv`` (stride, padding incl. ``"same"``, dilation,
                                       groups); ``"same"`` puts the odd pixel bottom/right
``MaxPool2d``                          ``MaxPool``; with ``ceil_mode`` an explicit −∞ ``Pad``
                                       first (PyTorch's rule for the last window, whatever the
                                       runtime's ceil-mode convention)
``AvgPool2d``                          ``AveragePool``; with ``ceil_mode`` or
                                       ``divisor_override``: ``Pad`` → ``AveragePool`` →
                                       ``Mul`` by a constant map of window sizes / divisors
``AdaptiveAvgPool2d``                  ``GlobalAveragePool`` for output 1×1, otherwise
                                       A_h · x · A_wᵀ (two ``MatMul`` with averaging matrices)
``GlobalAvgPool2d``                    ``GlobalAveragePool`` (+ ``Flatten`` unless keepdim)
``BatchNorm1d``, ``BatchNorm2d``       ``BatchNormalization`` with the running statistics
``LayerNorm``                          ``LayerNormalization``
``ReLU``, ``Sigmoid``, ``Tanh``,       the ONNX op of the same name (SELU with gradcraft's α, λ)
``LeakyReLU``, ``ELU``, ``SELU``,
``PReLU``, ``Softmax``,
``LogSoftmax``
``GELU``                               ``Gelu`` from opset 20; before, ½x(1 + erf(x/√2)) (or
                                       the tanh form) from elementary ops
``SiLU``, ``Swish``                    x · ``Sigmoid``(βx)
``Softplus``                           ``Where``(βx > threshold, x, ``Softplus``(βx)/β)
``Dropout``, ``Dropout2d``,            identity (vanilla dropout and the paper's stochastic
``AlphaDropout``, ``GaussianDropout``, depth scale by 1 − p instead)
``GaussianNoise``, ``StochasticDepth``
``BasicBlock``                         its convolutions, batch norms, shortcut (identity or
                                       the 1×1 projection), ``Add`` and ``Relu``
``Sequential``, ``Identity``,          their children / nothing / ``Flatten`` or ``Reshape``
``Flatten``, ``Unflatten``
=====================================  ==========================================================

Not exportable: ``FractionalMaxPool2d`` (random windows), batch norm without running
statistics (it normalizes with the batch's), layers of your own unless you register a
converter (see :mod:`gradcraft.io.onnx_graph`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradcraft import nn
from gradcraft.autograd.tensor import Tensor
from gradcraft.io.onnx_graph import ExportContext, Graph, LayerCall, OnnxExportError, register_onnx_converter
from gradcraft.nn.normalization import _BatchNorm
from gradcraft.ops.activation import SELU_ALPHA, SELU_SCALE
from gradcraft.ops.pooling import adaptive_pool_matrix, avg_pool2d, pool_output_size

__all__ = ["fold_preprocessing"]


def _array(t: Tensor | None) -> np.ndarray | None:
    return None if t is None else np.asarray(t.numpy())


# ---------------------------------------------------------------------------- containers
@register_onnx_converter(nn.Sequential)
def _sequential(ctx: ExportContext, m: nn.Sequential, x: str, call: LayerCall) -> str:
    for name, child in m._modules.items():
        x = ctx.convert(child, x, ctx.child_path(call.path, name))
    return x


@register_onnx_converter(nn.Identity)
def _identity(ctx: ExportContext, m: nn.Module, x: str, call: LayerCall) -> str:
    return x


@register_onnx_converter(nn.Flatten)
def _flatten(ctx: ExportContext, m: nn.Flatten, x: str, call: LayerCall) -> str:
    rank = len(call.in_shape)
    start, end = m.start_dim % rank, m.end_dim % rank
    if start == 0:
        raise ctx.fail(call, m, "flattens the batch axis, which the exported graph leaves dynamic")
    if start == 1 and end == rank - 1:
        return ctx.graph.node("Flatten", [x], call.path, axis=1)
    return ctx.graph.reshape(x, [0, *call.out_shape[1:]], call.path)


@register_onnx_converter(nn.Unflatten)
def _unflatten(ctx: ExportContext, m: nn.Unflatten, x: str, call: LayerCall) -> str:
    if m.dim % len(call.in_shape) == 0:
        raise ctx.fail(call, m, "unflattens the batch axis, which the exported graph leaves dynamic")
    return ctx.graph.reshape(x, [0, *call.out_shape[1:]], call.path)


# ---------------------------------------------------------------------------- affine layers
def _affine(ctx: ExportContext, x: str, call: LayerCall, weight: np.ndarray, bias: np.ndarray | None) -> str:
    g = ctx.graph
    if len(call.in_shape) == 2:
        inputs = [x, g.initializer(call.path + ".weight", weight)]
        if bias is not None:
            inputs.append(g.initializer(call.path + ".bias", bias))
        return g.node("Gemm", inputs, call.path, transB=1)
    y = g.node("MatMul", [x, g.initializer(call.path + ".weight_t", weight.T)], call.path)
    return y if bias is None else g.node("Add", [y, g.initializer(call.path + ".bias", bias)], call.path)


@register_onnx_converter(nn.Linear)
def _linear(ctx: ExportContext, m: nn.Linear, x: str, call: LayerCall) -> str:
    return _affine(ctx, x, call, _array(m.weight), _array(m.bias))


@register_onnx_converter(nn.DropConnect)
def _drop_connect(ctx: ExportContext, m: nn.DropConnect, x: str, call: LayerCall) -> str:
    weight = _array(m.weight)
    if m.mode == "vanilla":  # evaluation uses the expected weights (1 − p)·W
        weight = weight * (1.0 - m.p)
    return _affine(ctx, x, call, weight, _array(m.bias))


@register_onnx_converter(nn.Maxout)
def _maxout(ctx: ExportContext, m: nn.Maxout, x: str, call: LayerCall) -> str:
    z = _affine(ctx, x, call, _array(m.weight), _array(m.bias))
    z = ctx.graph.reshape(z, [0, *call.in_shape[1:-1], m.out_features, m.pieces], call.path)
    return ctx.graph.reduce("ReduceMax", z, [-1], call.path, keepdims=False)


@register_onnx_converter(nn.Conv2d)
def _conv2d(ctx: ExportContext, m: nn.Conv2d, x: str, call: LayerCall) -> str:
    if m.padding == "same":  # PyTorch's split: the odd row/column at the bottom/right
        totals = [d * (k - 1) for k, d in zip(m.kernel_size, m.dilation)]
        begin, end = [t // 2 for t in totals], [t - t // 2 for t in totals]
    elif m.padding == "valid":
        begin = end = [0, 0]
    else:
        begin = end = list(m.padding)
    g = ctx.graph
    inputs = [x, g.initializer(call.path + ".weight", _array(m.weight))]
    if m.bias is not None:
        inputs.append(g.initializer(call.path + ".bias", _array(m.bias)))
    return g.node(
        "Conv",
        inputs,
        call.path,
        kernel_shape=list(m.kernel_size),
        strides=list(m.stride),
        pads=[*begin, *end],
        dilations=list(m.dilation),
        group=m.groups,
    )


# ---------------------------------------------------------------------------- pooling
def _ceil_pads(call: LayerCall, kernel: Any, stride: Any, pad: Any, dilation: Any) -> list[int]:
    """ONNX ``Pad`` pads that make every ceil-mode window of PyTorch's rule fit the input, so a
    floor-mode pool without padding gives the same windows."""
    begin, end = [], []
    for size, k, s, p, d in zip(call.in_shape[2:], kernel, stride, pad, dilation):
        out = pool_output_size(size, k, s, p, d, True)
        reach = (out - 1) * s + d * (k - 1) + 1
        begin.append(p)
        end.append(max(p, reach - size - p))
    return [0, 0, *begin, 0, 0, *end]


def _pad(g: Graph, x: str, pads: list[int], value: float, hint: str) -> str:
    return g.node("Pad", [x, g.initializer(hint + ".pads", pads), g.scalar(hint + ".pad_value", value)], hint)


@register_onnx_converter(nn.MaxPool2d)
def _max_pool(ctx: ExportContext, m: nn.MaxPool2d, x: str, call: LayerCall) -> str:
    g = ctx.graph
    attrs: dict[str, Any] = {
        "kernel_shape": list(m.kernel_size),
        "strides": list(m.stride),
        "dilations": list(m.dilation),
    }
    if m.ceil_mode:
        x = _pad(g, x, _ceil_pads(call, m.kernel_size, m.stride, m.padding, m.dilation), -np.inf, call.path)
    else:
        attrs["pads"] = [*m.padding, *m.padding]
    return g.node("MaxPool", [x], call.path, **attrs)


@register_onnx_converter(nn.AvgPool2d)
def _avg_pool(ctx: ExportContext, m: nn.AvgPool2d, x: str, call: LayerCall) -> str:
    g = ctx.graph
    kernel, stride = list(m.kernel_size), list(m.stride)
    if not m.ceil_mode and m.divisor_override is None:
        return g.node(
            "AveragePool",
            [x],
            call.path,
            kernel_shape=kernel,
            strides=stride,
            pads=[*m.padding, *m.padding],
            count_include_pad=int(m.count_include_pad),
        )
    # window sums over an explicitly zero-padded input, then gradcraft's own divisor per cell:
    # 1/divisor = avg_pool(ones) / sum_pool(ones), both computed by gradcraft's avg_pool2d
    ones = Tensor(np.ones((1, 1, *call.in_shape[2:])))
    args = (m.kernel_size, m.stride, m.padding, m.ceil_mode)
    mean = avg_pool2d(ones, *args, m.count_include_pad, m.divisor_override).numpy()[0, 0]
    count = avg_pool2d(ones, *args, m.count_include_pad, 1).numpy()[0, 0]
    x = _pad(g, x, _ceil_pads(call, m.kernel_size, m.stride, m.padding, (1, 1)), 0.0, call.path)
    y = g.node("AveragePool", [x], call.path, kernel_shape=kernel, strides=stride)
    scale = mean / count * (kernel[0] * kernel[1])
    return g.node("Mul", [y, g.initializer(call.path + ".scale", scale)], call.path)


@register_onnx_converter(nn.AdaptiveAvgPool2d)
def _adaptive_avg_pool(ctx: ExportContext, m: nn.AdaptiveAvgPool2d, x: str, call: LayerCall) -> str:
    g = ctx.graph
    h, w = call.in_shape[2:]
    ho, wo = call.out_shape[2:]
    if (ho, wo) == (1, 1):
        return g.node("GlobalAveragePool", [x], call.path)
    if ho != h:
        rows = adaptive_pool_matrix(np, h, ho, np.float64)
        x = g.node("MatMul", [g.initializer(call.path + ".rows", rows), x], call.path)
    if wo != w:
        cols = adaptive_pool_matrix(np, w, wo, np.float64).T
        x = g.node("MatMul", [x, g.initializer(call.path + ".cols", cols)], call.path)
    return x


@register_onnx_converter(nn.GlobalAvgPool2d)
def _global_avg_pool(ctx: ExportContext, m: nn.GlobalAvgPool2d, x: str, call: LayerCall) -> str:
    y = ctx.graph.node("GlobalAveragePool", [x], call.path)
    return y if m.keepdim else ctx.graph.node("Flatten", [y], call.path, axis=1)


# ---------------------------------------------------------------------------- normalization
@register_onnx_converter(nn.BatchNorm1d, nn.BatchNorm2d)
def _batch_norm(ctx: ExportContext, m: _BatchNorm, x: str, call: LayerCall) -> str:
    if m.running_mean is None:
        raise ctx.fail(
            call,
            m,
            "has no running statistics (track_running_stats=False), so it normalizes with each "
            "batch's statistics, which an inference graph does not compute",
        )
    g, c, p = ctx.graph, m.num_features, call.path
    scale = _array(m.weight) if m.affine else np.ones(c)
    shift = _array(m.bias) if m.affine else np.zeros(c)
    inputs = [
        x,
        g.initializer(p + ".weight", scale),
        g.initializer(p + ".bias", shift),
        g.initializer(p + ".running_mean", _array(m.running_mean)),
        g.initializer(p + ".running_var", _array(m.running_var)),
    ]
    return g.node("BatchNormalization", inputs, p, epsilon=m.eps)


@register_onnx_converter(nn.LayerNorm)
def _layer_norm(ctx: ExportContext, m: nn.LayerNorm, x: str, call: LayerCall) -> str:
    g, p = ctx.graph, call.path
    weight = _array(m.weight) if m.weight is not None else np.ones(m.normalized_shape)
    inputs = [x, g.initializer(p + ".weight", weight)]
    if m.bias is not None:
        inputs.append(g.initializer(p + ".bias", _array(m.bias)))
    return g.node("LayerNormalization", inputs, p, axis=-len(m.normalized_shape), epsilon=m.eps)


# ---------------------------------------------------------------------------- activations
def _simple(op: str) -> Any:
    def convert(ctx: ExportContext, m: nn.Module, x: str, call: LayerCall) -> str:
        return ctx.graph.node(op, [x], call.path)

    return convert


for _cls, _op in ((nn.ReLU, "Relu"), (nn.Sigmoid, "Sigmoid"), (nn.Tanh, "Tanh")):
    register_onnx_converter(_cls)(_simple(_op))


@register_onnx_converter(nn.LeakyReLU)
def _leaky_relu(ctx: ExportContext, m: nn.LeakyReLU, x: str, call: LayerCall) -> str:
    return ctx.graph.node("LeakyRelu", [x], call.path, alpha=m.negative_slope)


@register_onnx_converter(nn.ELU)
def _elu(ctx: ExportContext, m: nn.ELU, x: str, call: LayerCall) -> str:
    return ctx.graph.node("Elu", [x], call.path, alpha=m.alpha)


@register_onnx_converter(nn.SELU)
def _selu(ctx: ExportContext, m: nn.SELU, x: str, call: LayerCall) -> str:
    return ctx.graph.node("Selu", [x], call.path, alpha=SELU_ALPHA, gamma=SELU_SCALE)


@register_onnx_converter(nn.PReLU)
def _prelu(ctx: ExportContext, m: nn.PReLU, x: str, call: LayerCall) -> str:
    slope = _array(m.weight)
    if m.num_parameters > 1:  # one α per channel (axis 1): shape (C, 1, …) broadcasts over the rest
        slope = slope.reshape((-1,) + (1,) * (len(call.in_shape) - 2))
    return ctx.graph.node("PRelu", [x, ctx.graph.initializer(call.path + ".weight", slope)], call.path)


@register_onnx_converter(nn.GELU)
def _gelu(ctx: ExportContext, m: nn.GELU, x: str, call: LayerCall) -> str:
    g, p = ctx.graph, call.path
    if g.opset >= 20:
        return g.node("Gelu", [x], p, approximate=m.approximate)
    if m.approximate == "tanh":  # ½x(1 + tanh(√(2/π)(x + 0.044715x³)))
        cube = g.node("Mul", [g.node("Mul", [x, x], p), x], p)
        inner = g.node("Add", [x, g.node("Mul", [cube, g.scalar(p + ".c", 0.044715)], p)], p)
        core = g.node("Tanh", [g.node("Mul", [inner, g.scalar(p + ".k", math.sqrt(2 / math.pi))], p)], p)
    else:  # ½x(1 + erf(x/√2))
        core = g.node("Erf", [g.node("Mul", [x, g.scalar(p + ".k", 1 / math.sqrt(2))], p)], p)
    half_x = g.node("Mul", [x, g.scalar(p + ".half", 0.5)], p)
    return g.node("Mul", [half_x, g.node("Add", [core, g.scalar(p + ".one", 1.0)], p)], p)


def _swish(ctx: ExportContext, x: str, beta: float, path: str) -> str:
    g = ctx.graph
    z = x if beta == 1.0 else g.node("Mul", [x, g.scalar(path + ".beta", beta)], path)
    return g.node("Mul", [x, g.node("Sigmoid", [z], path)], path)


@register_onnx_converter(nn.SiLU)
def _silu(ctx: ExportContext, m: nn.SiLU, x: str, call: LayerCall) -> str:
    return _swish(ctx, x, 1.0, call.path)


@register_onnx_converter(nn.Swish)
def _swish_layer(ctx: ExportContext, m: nn.Swish, x: str, call: LayerCall) -> str:
    return _swish(ctx, x, m.beta, call.path)


@register_onnx_converter(nn.Softplus)
def _softplus(ctx: ExportContext, m: nn.Softplus, x: str, call: LayerCall) -> str:
    g, p = ctx.graph, call.path
    z = x if m.beta == 1.0 else g.node("Mul", [x, g.scalar(p + ".beta", m.beta)], p)
    soft = g.node("Softplus", [z], p)
    if m.beta != 1.0:
        soft = g.node("Div", [soft, g.scalar(p + ".beta_div", m.beta)], p)
    linear = g.node("Greater", [z, g.scalar(p + ".threshold", m.threshold)], p)
    return g.node("Where", [linear, x, soft], p)


@register_onnx_converter(nn.Softmax)
def _softmax(ctx: ExportContext, m: nn.Softmax, x: str, call: LayerCall) -> str:
    return ctx.graph.node("Softmax", [x], call.path, axis=m.dim)


@register_onnx_converter(nn.LogSoftmax)
def _log_softmax(ctx: ExportContext, m: nn.LogSoftmax, x: str, call: LayerCall) -> str:
    return ctx.graph.node("LogSoftmax", [x], call.path, axis=m.dim)


# ---------------------------------------------------------------------------- dropout family
def _scale(ctx: ExportContext, x: str, factor: float, path: str) -> str:
    return ctx.graph.node("Mul", [x, ctx.graph.scalar(path + ".scale", factor)], path)


@register_onnx_converter(nn.Dropout, nn.Dropout2d)
def _dropout(ctx: ExportContext, m: nn.Dropout, x: str, call: LayerCall) -> str:
    return _scale(ctx, x, 1.0 - m.p, call.path) if m.mode == "vanilla" else x


register_onnx_converter(nn.AlphaDropout, nn.GaussianDropout, nn.GaussianNoise)(_identity)


@register_onnx_converter(nn.StochasticDepth)
def _stochastic_depth(ctx: ExportContext, m: nn.StochasticDepth, x: str, call: LayerCall) -> str:
    return _scale(ctx, x, 1.0 - m.p, call.path) if m.scaling == "original" else x


# ---------------------------------------------------------------------------- residual
@register_onnx_converter(nn.BasicBlock)
def _basic_block(ctx: ExportContext, m: nn.BasicBlock, x: str, call: LayerCall) -> str:
    """ReLU(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), in forward()'s call order."""
    p = call.path

    def sub(name: str, value: str) -> str:
        return ctx.convert(getattr(m, name), value, ctx.child_path(p, name))

    out = sub("relu", sub("bn1", sub("conv1", x)))
    out = sub("bn2", sub("conv2", out))
    if m.drop_path is not None:
        out = sub("drop_path", out)
    shortcut = x if m.downsample is None else sub("downsample", x)
    return ctx.graph.node("Relu", [ctx.graph.node("Add", [out, shortcut], p)], p)


# ---------------------------------------------------------------------------- preprocessing
def fold_preprocessing(graph: Graph, preprocessor: Any, x: str, rank: int) -> str:
    """Prepend a fitted ``Standardize`` ((x − μ_c)·(1/max(σ_c, ε))), ``ChannelMean``
    (x − μ_c) or ``MeanImage`` (x − μ) to the graph, with the same float32 constants and
    operations as its ``transform``; ``rank`` is the input's rank including the batch axis.

    Raises:
        OnnxExportError: for other preprocessors (PCA, ZCA, …) or an unfitted one.
    """
    kind = type(preprocessor).__name__
    if kind not in ("Standardize", "ChannelMean", "MeanImage"):
        raise OnnxExportError(
            "Expected a Standardize, ChannelMean or MeanImage preprocessor to fold into the graph. "
            f"Received: {kind}; export without the preprocessing and apply it before the model"
        )
    if not preprocessor.fitted:
        raise OnnxExportError(f"Expected a fitted preprocessor. Received: an unfitted {kind}")
    mean = np.asarray(preprocessor.mean, dtype=np.float64)
    per_channel = (1, -1) + (1,) * (rank - 2)
    mean = mean.reshape((1, *mean.shape)) if kind == "MeanImage" else mean.reshape(per_channel)
    x = graph.node("Sub", [x, graph.initializer("preprocessing.mean", mean)], "preprocessing")
    if kind == "Standardize":
        scale = (1.0 / np.maximum(preprocessor.std, preprocessor.eps)).reshape(per_channel)
        x = graph.node("Mul", [x, graph.initializer("preprocessing.inv_std", scale)], "preprocessing")
    return x
