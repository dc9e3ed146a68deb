"""ONNX export: ONNX Runtime computes what gradcraft computes (eval mode), layer by layer and on
the shipped recipes' models, with a dynamic batch dimension."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ["ORT_DISABLE_TELEMETRY"] = "1"
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from gradcraft import nn  # noqa: E402
from gradcraft.autograd.tensor import Tensor  # noqa: E402
from gradcraft.data.loader import to_float  # noqa: E402
from gradcraft.data.preprocessing import PCA, ChannelMean, MeanImage, Standardize  # noqa: E402
from gradcraft.io import OnnxExportError, export_onnx, to_onnx  # noqa: E402
from gradcraft.io.onnx_export import register_onnx_converter  # noqa: E402
from gradcraft.io.onnx_graph import CONVERTERS  # noqa: E402
from gradcraft.models import build_model  # noqa: E402
from gradcraft.nn.module import LayerError  # noqa: E402
from tests.io.helpers import eval_forward, ort_run, randomize_batch_norms  # noqa: E402

TOL = {"rtol": 1e-5, "atol": 1e-5}


def batch(shape: tuple[int, ...], n: int = 7, scale: float = 1.0, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, *shape)) * scale).astype(np.float32)


def assert_same(model: nn.Module, shape: tuple[int, ...], scale: float = 1.0, **options: Any) -> Any:
    """Export, run batch 7 in ONNX Runtime, compare with gradcraft; returns the ModelProto."""
    proto = to_onnx(model, shape, **options)
    x = batch(shape, scale=scale)
    np.testing.assert_allclose(ort_run(proto, x), eval_forward(model, x), **TOL)
    return proto


# ---------------------------------------------------------------------------- per layer
def _block(**kwargs: Any) -> nn.Module:
    block = nn.BasicBlock(4, kwargs.pop("out", 4), **kwargs)
    randomize_batch_norms(block, seed=5)
    return block


def _bn(cls: type, c: int, **kwargs: Any) -> nn.Module:
    layer = cls(c, **kwargs)
    randomize_batch_norms(layer, seed=3)
    return layer


def _prelu(n: int) -> nn.Module:
    layer = nn.PReLU(n)
    layer.weight.data[...] = np.linspace(-0.5, 0.8, n)
    return layer


IMG = (4, 9, 9)
LAYERS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], float]] = {
    # affine
    "linear": (lambda: nn.Linear(6, 5), (6,), 1.0),
    "linear_no_bias": (lambda: nn.Linear(6, 5, bias=False), (6,), 1.0),
    "linear_rank3": (lambda: nn.Linear(6, 5), (3, 6), 1.0),
    "dropconnect_inverted": (lambda: nn.DropConnect(6, 5, p=0.4), (6,), 1.0),
    "dropconnect_vanilla": (lambda: nn.DropConnect(6, 5, p=0.4, mode="vanilla"), (6,), 1.0),
    "maxout": (lambda: nn.Maxout(6, 4, pieces=3), (6,), 1.0),
    # convolution
    "conv": (lambda: nn.Conv2d(4, 6, 3), IMG, 1.0),
    "conv_stride2_pad1": (lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1), IMG, 1.0),
    "conv_same_odd": (lambda: nn.Conv2d(4, 6, 5, padding="same"), IMG, 1.0),
    "conv_same_even": (lambda: nn.Conv2d(4, 6, 4, padding="same"), IMG, 1.0),  # odd pixel bottom/right
    "conv_same_dilated": (lambda: nn.Conv2d(4, 6, (2, 3), padding="same", dilation=(3, 2)), IMG, 1.0),
    "conv_valid": (lambda: nn.Conv2d(4, 6, 3, padding="valid", bias=False), IMG, 1.0),
    "conv_groups": (lambda: nn.Conv2d(4, 6, 3, padding=1, groups=2), IMG, 1.0),
    "conv_depthwise": (lambda: nn.Conv2d(4, 8, 3, padding=1, groups=4), IMG, 1.0),
    "conv_dilation": (lambda: nn.Conv2d(4, 6, 3, padding=2, dilation=2), IMG, 1.0),
    "conv_rect": (lambda: nn.Conv2d(4, 6, (3, 5), stride=(2, 1), padding=(1, 2)), IMG, 1.0),
    # pooling
    "maxpool": (lambda: nn.MaxPool2d(2), IMG, 1.0),
    "maxpool_pad_stride": (lambda: nn.MaxPool2d(3, stride=2, padding=1), IMG, 1.0),
    "maxpool_dilation": (lambda: nn.MaxPool2d(3, stride=1, padding=1, dilation=2), IMG, 1.0),
    "maxpool_ceil": (lambda: nn.MaxPool2d(2, ceil_mode=True), IMG, 1.0),
    # 9 + 2·1 − 3 = 8 → ⌈8/4⌉ + 1 = 3 windows, the last starting at 8 = size + pad − 2: kept
    "maxpool_ceil_pad": (lambda: nn.MaxPool2d(3, stride=4, padding=1, ceil_mode=True), IMG, 1.0),
    # 9 + 2·1 − 2 = 9 → ⌈9/2⌉ + 1 = 6 windows, but the 6th would start in the right padding: 5
    "maxpool_ceil_dropped": (lambda: nn.MaxPool2d(2, stride=2, padding=1, ceil_mode=True), IMG, 1.0),
    "avgpool": (lambda: nn.AvgPool2d(3), IMG, 1.0),
    "avgpool_pad_include": (lambda: nn.AvgPool2d(3, stride=2, padding=1), IMG, 1.0),
    "avgpool_pad_exclude": (lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), IMG, 1.0),
    "avgpool_ceil": (lambda: nn.AvgPool2d(2, ceil_mode=True), IMG, 1.0),
    "avgpool_ceil_pad": (lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True), (4, 8, 8), 1.0),
    "avgpool_ceil_exclude": (
        lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        (4, 8, 8),
        1.0,
    ),
    "avgpool_divisor": (lambda: nn.AvgPool2d(3, stride=2, padding=1, divisor_override=4), IMG, 1.0),
    "adaptive_1": (lambda: nn.AdaptiveAvgPool2d(1), IMG, 1.0),
    "adaptive_3x3_uneven": (lambda: nn.AdaptiveAvgPool2d((3, 4)), (4, 7, 9), 1.0),
    "adaptive_keep_width": (lambda: nn.AdaptiveAvgPool2d((2, None)), (4, 7, 9), 1.0),
    "global_avgpool": (lambda: nn.GlobalAvgPool2d(), IMG, 1.0),
    "global_avgpool_keepdim": (lambda: nn.GlobalAvgPool2d(keepdim=True), IMG, 1.0),
    # normalization
    "batchnorm1d": (lambda: _bn(nn.BatchNorm1d, 6), (6,), 1.0),
    "batchnorm1d_ncl": (lambda: _bn(nn.BatchNorm1d, 6), (6, 5), 1.0),
    "batchnorm2d": (lambda: _bn(nn.BatchNorm2d, 4, eps=1e-3), IMG, 1.0),
    "batchnorm2d_no_affine": (lambda: _bn(nn.BatchNorm2d, 4, affine=False), IMG, 1.0),
    "layernorm": (lambda: nn.LayerNorm(6), (3, 6), 1.0),
    "layernorm_2d_no_bias": (lambda: nn.LayerNorm((3, 6), bias=False), (3, 6), 1.0),
    "layernorm_no_affine": (lambda: nn.LayerNorm(6, elementwise_affine=False), (6,), 1.0),
    # activations (inputs scaled by 4 to cross Softplus's threshold and reach the flat parts)
    "relu": (nn.ReLU, IMG, 4.0),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), IMG, 4.0),
    "elu": (lambda: nn.ELU(0.7), IMG, 4.0),
    "selu": (nn.SELU, IMG, 4.0),
    "gelu": (nn.GELU, IMG, 4.0),
    "gelu_tanh": (lambda: nn.GELU("tanh"), IMG, 4.0),
    "sigmoid": (nn.Sigmoid, IMG, 4.0),
    "tanh": (nn.Tanh, IMG, 4.0),
    "softplus": (nn.Softplus, IMG, 10.0),
    "softplus_beta_threshold": (lambda: nn.Softplus(beta=2.0, threshold=5.0), IMG, 4.0),
    "silu": (nn.SiLU, IMG, 4.0),
    "swish": (lambda: nn.Swish(1.5), IMG, 4.0),
    "prelu_shared": (lambda: _prelu(1), IMG, 4.0),
    "prelu_per_channel": (lambda: _prelu(4), IMG, 4.0),
    "prelu_per_feature": (lambda: _prelu(6), (6,), 4.0),
    "softmax_channels": (lambda: nn.Softmax(dim=1), IMG, 4.0),
    "log_softmax": (lambda: nn.LogSoftmax(), (6,), 4.0),
    # dropout family (identity in evaluation, or the 1 − p scaling of the vanilla forms)
    "dropout": (lambda: nn.Dropout(0.5), IMG, 1.0),
    "dropout_vanilla": (lambda: nn.Dropout(0.3, mode="vanilla"), IMG, 1.0),
    "dropout2d": (lambda: nn.Dropout2d(0.5), IMG, 1.0),
    "alpha_dropout": (lambda: nn.AlphaDropout(0.2), IMG, 1.0),
    "gaussian_dropout": (lambda: nn.GaussianDropout(0.2), IMG, 1.0),
    "gaussian_noise": (lambda: nn.GaussianNoise(0.5), IMG, 1.0),
    "stochastic_depth_original": (lambda: nn.StochasticDepth(0.25, scaling="original"), IMG, 1.0),
    # residual blocks
    "basic_block": (_block, IMG, 1.0),
    "basic_block_downsample": (lambda: _block(out=8, stride=2), IMG, 1.0),
    "basic_block_zero_init": (lambda: nn.BasicBlock(4, 4, zero_init_residual=True), IMG, 1.0),
    "basic_block_stochastic_depth": (lambda: _block(stochastic_depth=0.3), IMG, 1.0),
    # shapes and containers
    "flatten": (nn.Flatten, IMG, 1.0),
    "flatten_inner": (lambda: nn.Flatten(2, 3), IMG, 1.0),
    "unflatten": (lambda: nn.Unflatten(1, (2, 3)), (6,), 1.0),
    "identity": (nn.Identity, (6,), 1.0),
    "nested": (lambda: nn.Sequential(nn.Sequential(nn.Identity(), nn.ReLU()), nn.Tanh()), (6,), 1.0),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_matches_onnx_runtime(name: str) -> None:
    make, shape, scale = LAYERS[name]
    assert_same(nn.Sequential(make()), shape, scale=scale)


def test_every_exportable_layer_class_is_tested_above() -> None:
    tested = {type(m) for make, _, _ in LAYERS.values() for m in nn.Sequential(make()).modules()}
    assert set(CONVERTERS) <= tested, sorted(c.__name__ for c in set(CONVERTERS) - tested)


@pytest.mark.parametrize("opset", [17, 18, 20, 21])
def test_opset_dependent_ops(opset: int) -> None:
    # ReduceMax takes its axes as an input from opset 18; Gelu is an op from opset 20
    model = nn.Sequential(nn.Maxout(6, 4, pieces=2), nn.GELU(), nn.Linear(4, 3), nn.GELU("tanh"))
    proto = assert_same(model, (6,), scale=2.0, opset=opset)
    assert proto.opset_import[0].version == opset
    ops = {n.op_type for n in proto.graph.node}
    assert ("Gelu" in ops) == (opset >= 20)


def test_ceil_mode_drops_the_window_starting_in_the_padding() -> None:
    model = nn.Sequential(nn.MaxPool2d(2, stride=2, padding=1, ceil_mode=True))
    proto = assert_same(model, IMG)
    out = proto.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in out[1:]] == [4, 5, 5]


# ---------------------------------------------------------------------------- the shipped recipes
@pytest.mark.parametrize("recipe", ["fashion_quick", "fashion_mlp", "fashion_cnn", "fashion_resnet"])
def test_shipped_recipe_models_match_onnx_runtime(recipe: str, tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    pytest.importorskip("pydantic")
    from gradcraft.config import load_recipe

    model = build_model(load_recipe(recipe).model, (1, 28, 28), 10)
    randomize_batch_norms(model, seed=1)
    path = export_onnx(model, tmp_path / f"{recipe}.onnx", (1, 28, 28))
    for n in (1, 7):  # the batch dimension is dynamic
        x = batch((1, 28, 28), n=n, seed=n)
        np.testing.assert_allclose(ort_run(path, x), eval_forward(model, x), **TOL)


def test_batch_dimension_is_dynamic_and_named() -> None:
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.GlobalAvgPool2d(), nn.Linear(3, 2))
    proto = to_onnx(model, (1, 6, 6))
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "input" and out.name == "logits"
    assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == [1, 6, 6]
    assert out.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in out.type.tensor_type.shape.dim[1:]] == [2]
    for n in (1, 7):
        x = batch((1, 6, 6), n=n)
        y = ort_run(proto, x)
        assert y.shape == (n, 2)
        np.testing.assert_allclose(y, eval_forward(model, x), **TOL)


def test_export_is_in_eval_mode_and_keeps_the_models_mode(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(6), nn.Dropout(0.9), nn.Linear(6, 2))
    randomize_batch_norms(model)
    model.train()
    before = model[1].running_mean.numpy().copy()
    proto = assert_same(model, (6,))
    assert model.training and model[2].training
    np.testing.assert_array_equal(model[1].running_mean.numpy(), before)  # the probe run did not update it
    assert {n.op_type for n in proto.graph.node} == {"Gemm", "BatchNormalization"}


def test_file_is_written_checked_and_carries_metadata(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 3))
    path = export_onnx(model, tmp_path / "sub" / "m.onnx", (4,), softmax=True, metadata={"classes": "a,b,c"})
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded, full_check=True)
    assert loaded.producer_name == "gradcraft"
    assert {p.key: p.value for p in loaded.metadata_props} == {"classes": "a,b,c"}
    assert loaded.graph.output[0].name == "probabilities"
    x = batch((4,))
    logits = eval_forward(model, x)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ort_run(path, x), expected, **TOL)


def test_identity_model_still_has_a_node_for_its_output() -> None:
    proto = assert_same(nn.Sequential(nn.Identity(), nn.Dropout(0.1)), (5,))
    assert [n.op_type for n in proto.graph.node] == ["Identity"]


# ---------------------------------------------------------------------------- preprocessing
def _pixels(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


@pytest.mark.parametrize("pre_cls", [Standardize, ChannelMean, MeanImage])
@pytest.mark.parametrize("uint8_input", [False, True])
def test_preprocessing_is_folded_into_the_graph(pre_cls: type, uint8_input: bool) -> None:
    shape = (3, 5, 5)
    pre = pre_cls().fit(_pixels(40, shape, seed=1))
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(36, 3))
    proto = to_onnx(model, shape, preprocessor=pre, uint8_input=uint8_input, softmax=True)
    raw = _pixels(7, shape, seed=2)
    logits = eval_forward(model, pre(to_float(raw)))  # what the data pipeline and predict compute
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    fed = raw if uint8_input else to_float(raw)
    np.testing.assert_allclose(ort_run(proto, fed), expected, **TOL)
    expected_type = onnx.TensorProto.UINT8 if uint8_input else onnx.TensorProto.FLOAT
    assert proto.graph.input[0].type.tensor_type.elem_type == expected_type


def test_preprocessing_that_cannot_be_folded_is_refused() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(
        OnnxExportError, match=r"Expected a Standardize, ChannelMean or MeanImage.*Received: PCA"
    ):
        to_onnx(model, (2, 2, 2), preprocessor=PCA().fit(np.random.default_rng(0).random((20, 2, 2, 2))))
    with pytest.raises(OnnxExportError, match="Expected a fitted preprocessor"):
        to_onnx(model, (2, 2, 2), preprocessor=Standardize())


# ---------------------------------------------------------------------------- errors
def test_unsupported_layer_is_named_by_its_path() -> None:
    model = nn.Sequential(
        OrderedDict(
            layers=nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Identity(), nn.FractionalMaxPool2d(2, 2)),
        )
    )
    with pytest.raises(OnnxExportError, match=r"^layers\.3 \(FractionalMaxPool2d\) has no ONNX export"):
        to_onnx(model, (1, 8, 8))


def test_a_custom_module_needs_a_converter() -> None:
    class Doubler(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x * 2

    with pytest.raises(
        OnnxExportError, match=r"^the model \(Doubler\) has no ONNX export. Supported layers: "
    ):
        to_onnx(Doubler(), (3,))
    try:

        @register_onnx_converter(Doubler)
        def _doubler(ctx: Any, m: Doubler, x: str, call: Any) -> str:
            return ctx.graph.node("Mul", [x, ctx.graph.scalar(call.path + ".two", 2.0)], call.path)

        assert_same(nn.Sequential(nn.Linear(3, 3), Doubler()), (3,))
    finally:
        CONVERTERS.pop(Doubler, None)


@pytest.mark.parametrize(
    ("layer", "shape", "message"),
    [
        (lambda: nn.BatchNorm1d(4, track_running_stats=False), (4,), r"^0 \(BatchNorm1d\): has no running"),
        (lambda: nn.Flatten(0), (4,), r"^0 \(Flatten\): flattens the batch axis"),
        (lambda: nn.Unflatten(0, (1, -1)), (4,), r"^0 \(Unflatten\): unflattens the batch axis"),
    ],
)
def test_settings_an_inference_graph_cannot_express(
    layer: Callable[[], nn.Module], shape: Any, message: str
) -> None:
    with pytest.raises(OnnxExportError, match=message):
        to_onnx(nn.Sequential(layer()), shape)


def test_forward_hooks_are_refused() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    model[1].register_forward_hook(lambda m, args, out: out * 0)
    with pytest.raises(OnnxExportError, match=r"^1 \(ReLU\) has forward hooks"):
        to_onnx(model, (3,))


def test_wrong_input_shape_names_the_layer() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(LayerError, match="in layer '1'"):
        to_onnx(model, (1, 3, 3))
    with pytest.raises(OnnxExportError, match=r"Expected a non-empty input_shape of positive sizes"):
        to_onnx(model, (1, 0, 4))


@pytest.mark.parametrize("opset", [16, 10_000, 17.0])
def test_opset_out_of_range(opset: Any) -> None:
    with pytest.raises(OnnxExportError, match=r"Expected an opset from 17 to \d+.*Received: opset="):
        to_onnx(nn.Sequential(nn.ReLU()), (3,), opset=opset)
