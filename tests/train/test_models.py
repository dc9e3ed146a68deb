"""Building models from a recipe's model section: named blocks and layer lists."""

from __future__ import annotations

import numpy as np
import pytest

import gradcraft
from gradcraft import nn
from gradcraft.models import ModelBuildError, build_model


def forward(model: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    model.eval()
    with gradcraft.no_grad():
        return tuple(model(gradcraft.Tensor(np.zeros((2, *shape), np.float32))).shape)


def test_mlp_block_layers_and_names() -> None:
    model = build_model(
        {"block": "mlp", "widths": [32, 16], "norm": "batchnorm", "dropout": 0.1}, (1, 8, 8), 3
    )
    kinds = [type(m).__name__ for m in model.children()]
    assert kinds == [
        "Flatten",
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Dropout",
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    names = list(model.state_dict())
    assert names[:2] == ["1.weight", "2.weight"]  # no bias before batch norm
    assert "9.bias" in names
    assert forward(model, (1, 8, 8)) == (2, 3)


def test_mlp_without_norm_or_dropout() -> None:
    model = build_model({"widths": [10], "activation": "tanh"}, (1, 4, 4), 2)
    assert [type(m).__name__ for m in model.children()] == ["Flatten", "Linear", "Tanh", "Linear"]
    assert model[1].bias is not None


def test_mlp_accepts_flat_inputs() -> None:
    model = build_model({"widths": [8]}, (20,), 4)
    assert [type(m).__name__ for m in model.children()] == ["Linear", "ReLU", "Linear"]
    assert forward(model, (20,)) == (2, 4)


def test_kaiming_init_has_the_he_variance_and_zero_bias() -> None:
    gradcraft.manual_seed(0)
    model = build_model({"widths": [512], "init": "kaiming_normal"}, (1, 20, 20), 10)
    w = model[1].weight.numpy()
    assert w.std() == pytest.approx(np.sqrt(2 / 400), rel=0.05)
    assert np.all(model[1].bias.numpy() == 0)


def test_xavier_init_is_glorots_formula_without_a_gain() -> None:
    gradcraft.manual_seed(0)
    model = build_model({"widths": [400], "init": "xavier_normal", "activation": "relu"}, (400,), 10)
    w = model[0].weight.numpy()
    assert w.std() == pytest.approx(np.sqrt(2 / 800), rel=0.05)


def test_output_layer_gets_the_linear_gain() -> None:
    gradcraft.manual_seed(0)
    model = build_model({"widths": [400], "init": "kaiming_normal", "activation": "relu"}, (400,), 10)
    hidden, output = model[0].weight.numpy(), model[-1].weight.numpy()
    assert hidden.std() == pytest.approx(np.sqrt(2 / 400), rel=0.05)
    assert output.std() == pytest.approx(np.sqrt(1 / 400), rel=0.1)


def test_default_init_keeps_pytorch_layer_defaults() -> None:
    gradcraft.manual_seed(0)
    model = build_model({"widths": [64], "init": "default"}, (100,), 3)
    bound = 1 / np.sqrt(100)
    assert np.abs(model[0].weight.numpy()).max() <= bound
    assert np.any(model[0].bias.numpy() != 0)


def test_layer_list_infers_input_sizes() -> None:
    model = build_model(
        {
            "layers": [
                "flatten",
                {"type": "linear", "out_features": 12},
                "relu",
                "batchnorm",
                {"type": "dropout", "p": 0.2},
                {"type": "linear", "out_features": 5},
            ]
        },
        (2, 3, 3),
        5,
    )
    assert model[1].in_features == 18 and model[5].in_features == 12
    assert type(model[3]).__name__ == "BatchNorm1d"
    assert forward(model, (2, 3, 3)) == (2, 5)


def test_layer_list_flattens_before_linear_automatically() -> None:
    model = build_model({"layers": [{"type": "linear", "out_features": 4}]}, (1, 2, 2), 4)
    assert type(model[0]).__name__ == "Flatten"


def test_layer_list_must_end_with_the_number_of_classes() -> None:
    with pytest.raises(ModelBuildError, match=r"ends with shape \(7,\).*10 classes.*out_features: 10"):
        build_model({"layers": ["flatten", {"type": "linear", "out_features": 7}]}, (1, 4, 4), 10)


def test_layer_list_conv_after_flatten_is_explained() -> None:
    with pytest.raises(ModelBuildError, match=r"model.layers.1 \(conv2d\).*\(C, H, W\) images.*\(16,\)"):
        build_model(
            {
                "layers": [
                    "flatten",
                    {"type": "conv2d", "out_channels": 4},
                    {"type": "linear", "out_features": 2},
                ]
            },
            (1, 4, 4),
            2,
        )


def test_unknown_model_keys_are_refused() -> None:
    with pytest.raises(ModelBuildError, match="widht"):
        build_model({"widht": [3]}, (4,), 2)


def test_cnn_block_shapes() -> None:
    model = build_model(
        {
            "block": "cnn",
            "widths": [4, 8],
            "convs_per_stage": 2,
            "hidden": [16],
            "norm": "batchnorm",
            "dropout": 0.3,
        },
        (1, 12, 12),
        3,
    )
    kinds = [type(m).__name__ for m in model.children()]
    assert kinds.count("Conv2d") == 4 and kinds.count("MaxPool2d") == 2 and kinds.count("BatchNorm2d") == 4
    linear = [m for m in model.children() if type(m).__name__ == "Linear"]
    assert linear[0].in_features == 8 * 3 * 3
    assert forward(model, (1, 12, 12)) == (2, 3)


def test_cnn_on_an_input_too_small_for_its_pooling() -> None:
    with pytest.raises(ModelBuildError, match="too small"):
        build_model({"block": "cnn", "widths": [4, 4, 4]}, (1, 4, 4), 2)


def test_resnet_block_shapes_and_zero_init_residual() -> None:
    model = build_model({"block": "resnet", "widths": [4, 8], "blocks_per_stage": 2}, (1, 8, 8), 3)
    blocks = [m for m in model.children() if type(m).__name__ == "BasicBlock"]
    assert len(blocks) == 4 and blocks[2].stride == 2
    assert np.all(blocks[0].bn2.weight.numpy() == 0)
    assert forward(model, (1, 8, 8)) == (2, 3)


def test_layer_list_with_conv_pool_residual_and_global_pooling() -> None:
    model = build_model(
        {
            "layers": [
                {"type": "conv2d", "out_channels": 4, "bias": False},
                "batchnorm",
                "relu",
                {"type": "residual", "out_channels": 8, "stride": 2},
                {"type": "avgpool2d", "kernel_size": 2},
                "global_avgpool",
                {"type": "linear", "out_features": 3},
            ]
        },
        (1, 8, 8),
        3,
    )
    assert forward(model, (1, 8, 8)) == (2, 3)
