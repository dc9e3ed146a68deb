import math

import numpy as np
import pytest

import gradcraft as gc
from gradcraft.nn.activation import ReLU
from gradcraft.nn.containers import Flatten, Sequential
from gradcraft.nn.conv import Conv2d
from gradcraft.nn.linear import Linear
from gradcraft.nn.module import LayerError
from gradcraft.nn.pooling import AdaptiveAvgPool2d, AvgPool2d, FractionalMaxPool2d, GlobalAvgPool2d, MaxPool2d
from gradcraft.ops import pooling as P

torch = pytest.importorskip("torch", reason="parity tests need PyTorch (pip install torch==2.13.0)")


def _load_torch_weights(ours, theirs):
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            p.copy_(torch.tensor(ours.state_dict()[name].astype(np.float64)))


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((3, 8, 3), {"padding": 1}),
        ((4, 6, (3, 2)), {"stride": 2, "dilation": (1, 2), "bias": False}),
        ((4, 8, 3), {"groups": 2, "padding": "same"}),
        ((4, 4, 1), {"groups": 4}),
    ],
)
def test_conv2d_layer_matches_torch_layer(args, kwargs):
    with gc.backend.default_dtype_as(np.float64):
        ours = Conv2d(*args, **kwargs)
    theirs = torch.nn.Conv2d(*args, **kwargs).double()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in theirs.state_dict().items()
    ]
    assert repr(ours) == repr(theirs)
    _load_torch_weights(ours, theirs)
    x = np.random.default_rng(0).standard_normal((2, args[0], 7, 8))
    xt, tt = gc.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ref = ours(xt), theirs(tt)
    np.testing.assert_allclose(y.numpy(), ref.detach().numpy(), atol=1e-10)
    g = np.random.default_rng(1).standard_normal(ref.shape)
    y.backward(g)
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(xt.grad, tt.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), atol=1e-10)
    if ours.bias is not None:
        np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), atol=1e-10)


@pytest.mark.parametrize(("in_ch", "out_ch", "k", "groups"), [(3, 64, 3, 1), (16, 32, 5, 4), (8, 8, 1, 1)])
def test_conv2d_default_init_is_pytorch_kaiming_uniform_with_a_sqrt5(in_ch, out_ch, k, groups):
    layer = Conv2d(in_ch, out_ch, k, groups=groups, generator=np.random.default_rng(0))
    fan_in = in_ch // groups * k * k
    bound = 1 / math.sqrt(fan_in)  # gain √(2/(1+5)) · √(3/fan_in)
    w, b = layer.weight.numpy(), layer.bias.numpy()
    assert w.dtype == np.float32 and w.shape == (out_ch, in_ch // groups, k, k)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert np.abs(b).max() <= bound
    np.testing.assert_allclose(w.std(), bound / math.sqrt(3), rtol=0.15)


def test_conv2d_init_is_reproducible_from_a_generator():
    a = Conv2d(3, 4, 3, generator=np.random.default_rng(5))
    b = Conv2d(3, 4, 3, generator=np.random.default_rng(5))
    np.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())
    np.testing.assert_array_equal(a.bias.numpy(), b.bias.numpy())


def test_conv2d_named_init_zeroes_the_bias():
    layer = Conv2d(3, 4, 3, init="kaiming_normal")
    assert np.all(layer.bias.numpy() == 0)


def test_conv2d_same_padding_keeps_the_spatial_size():
    for k in (3, 4, 5):
        y = Conv2d(2, 3, k, padding="same")(gc.randn(1, 2, 9, 10))
        assert y.shape == (1, 3, 9, 10)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"in_channels": 3, "out_channels": 4, "kernel_size": 3, "groups": 2}, "divisible by groups"),
        ({"in_channels": 0, "out_channels": 4, "kernel_size": 3}, "Received: in_channels=0"),
        ({"in_channels": 2, "out_channels": 4, "kernel_size": 0}, "Received: kernel_size=0"),
        ({"in_channels": 2, "out_channels": 4, "kernel_size": 3, "padding": "same", "stride": 2}, "stride=1"),
        ({"in_channels": 2, "out_channels": 4, "kernel_size": 3, "padding": "full"}, "padding='full'"),
    ],
)
def test_conv2d_constructor_errors(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        Conv2d(**kwargs)


def test_conv2d_wrong_channels_error_names_the_layer_and_expected_channels():
    model = Sequential(Conv2d(1, 4, 3), ReLU(), Conv2d(4, 8, 3))
    model[2] = Conv2d(5, 8, 3)
    with pytest.raises(LayerError, match=r"in layer '2' \(Conv2d\(5, 8.*Expected input of shape \(N, 5, H, W\)"):
        model(gc.randn(2, 1, 8, 8))


def test_small_cnn_matches_torch_end_to_end():
    with gc.backend.default_dtype_as(np.float64):
        ours = Sequential(
            Conv2d(1, 4, 3, padding=1), ReLU(), MaxPool2d(2),
            Conv2d(4, 6, 3, padding=1), ReLU(), MaxPool2d(2),
            Flatten(), Linear(6 * 2 * 2, 3),
        )  # fmt: skip
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(6 * 2 * 2, 3),
    ).double()  # fmt: skip
    _load_torch_weights(ours, theirs)
    x = np.random.default_rng(2).standard_normal((5, 1, 8, 8))
    y, ref = ours(gc.tensor(x)), theirs(torch.tensor(x))
    np.testing.assert_allclose(y.numpy(), ref.detach().numpy(), atol=1e-10)
    y.sum().backward()
    ref.sum().backward()
    for name, p in theirs.named_parameters():
        np.testing.assert_allclose(ours.get_parameter(name).grad, p.grad.numpy(), atol=1e-10, err_msg=name)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (lambda: MaxPool2d(2), lambda: torch.nn.MaxPool2d(2)),
        (lambda: MaxPool2d(3, 2, 1, ceil_mode=True), lambda: torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True)),
        (lambda: AvgPool2d(3, 1, 1), lambda: torch.nn.AvgPool2d(3, 1, 1)),
        (
            lambda: AvgPool2d(2, count_include_pad=False, padding=1),
            lambda: torch.nn.AvgPool2d(2, count_include_pad=False, padding=1),
        ),
        (lambda: AdaptiveAvgPool2d((3, 2)), lambda: torch.nn.AdaptiveAvgPool2d((3, 2))),
        (lambda: AdaptiveAvgPool2d(1), lambda: torch.nn.AdaptiveAvgPool2d(1)),
    ],
)
def test_pooling_layers_match_torch_layers(ours, theirs):
    x = np.random.default_rng(3).standard_normal((2, 3, 7, 6))
    xt, tt = gc.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ref = ours()(xt), theirs()(tt)
    np.testing.assert_allclose(y.numpy(), ref.detach().numpy(), atol=1e-12)
    g = np.random.default_rng(4).standard_normal(ref.shape)
    y.backward(g)
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(xt.grad, tt.grad.numpy(), atol=1e-12)


def test_global_avg_pool_layer_is_adaptive_pool_then_flatten():
    x = gc.randn(2, 5, 4, 3)
    np.testing.assert_allclose(GlobalAvgPool2d()(x).numpy(), AdaptiveAvgPool2d(1)(x).numpy().reshape(2, 5), rtol=1e-6)
    assert GlobalAvgPool2d(keepdim=True)(x).shape == (2, 5, 1, 1)


def test_pooling_layer_rejects_non_4d_input_naming_the_layer():
    with pytest.raises(ValueError, match=r"MaxPool2d expected input of shape \(N, C, H, W\). Received: shape=\(3, 8, 8\)"):
        MaxPool2d(2)(gc.randn(3, 8, 8))


def test_fractional_max_pool_layer_trains_with_fresh_regions_each_call():
    layer = FractionalMaxPool2d(2, output_ratio=1 / math.sqrt(2), generator=np.random.default_rng(0))
    x = gc.randn(2, 3, 16, 16)
    a, b = layer(x), layer(x)
    assert a.shape == (2, 3, 11, 11)
    assert not np.array_equal(a.numpy(), b.numpy())


def test_fractional_max_pool_layer_averages_region_sets_at_test_time():
    x = gc.randn(2, 3, 12, 12)
    layer = FractionalMaxPool2d(2, output_size=(8, 8), samples_at_test=4, generator=np.random.default_rng(1)).eval()
    y = layer(x).numpy()
    gen = np.random.default_rng(1)
    draws = [P.fractional_max_pool2d(x, 2, (8, 8), generator=gen).numpy() for _ in range(4)]
    np.testing.assert_allclose(y, np.mean(draws, axis=0), rtol=1e-6)
    # averaging several region sets is smoother than any single one
    single = FractionalMaxPool2d(2, output_size=(8, 8), generator=np.random.default_rng(2)).eval()
    spread_avg = np.var([layer(x).numpy() for _ in range(6)], axis=0).mean()
    spread_one = np.var([single(x).numpy() for _ in range(6)], axis=0).mean()
    assert spread_avg < spread_one


def test_fractional_max_pool_layer_arguments_are_checked():
    with pytest.raises(ValueError, match="exactly one of output_size and output_ratio"):
        FractionalMaxPool2d(2)
    with pytest.raises(ValueError, match=r"Received: samples_at_test=0"):
        FractionalMaxPool2d(2, output_ratio=0.5, samples_at_test=0)
