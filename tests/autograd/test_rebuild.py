"""Rebuilt activations: a batch-norm output (or a ReLU of one) that a later op keeps for
backward is computed again in backward instead of kept, with the same bits."""

import gc
import weakref

import numpy as np
import pytest

import gradcraft as gc_
from gradcraft import nn, optim
from gradcraft.autograd import function, gradcheck, is_rebuild_enabled, set_rebuild_enabled
from gradcraft.nn import functional as F


@pytest.fixture(autouse=True)
def rebuild_small_arrays(monkeypatch):
    """These tests use arrays below the size where rebuilding starts; rebuild them all."""
    monkeypatch.setattr(function, "REBUILD_MIN_BYTES", 0)


def _conv_bn_relu_conv(layout: str, dtype=np.float32, training: bool = True):
    """Parameters and input of conv → batch norm → ReLU → conv, large enough for the compiled
    kernels (16 channels, 24×24, 4 samples)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 16, 24, 24)).astype(dtype)
    if layout == "channels_last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    params = {
        "w2": gc_.tensor(rng.standard_normal((8, 16, 3, 3)).astype(dtype) * 0.1, requires_grad=True),
        "gamma": gc_.tensor(rng.uniform(0.5, 1.5, 16).astype(dtype), requires_grad=True),
        "beta": gc_.tensor(rng.standard_normal(16).astype(dtype) * 0.1, requires_grad=True),
    }
    stats = (np.zeros(16, dtype), np.ones(16, dtype))
    return gc_.tensor(x, requires_grad=True), params, stats, training


def _forward(x, p, stats, training, kernel=3, stride=1):
    h = F.batch_norm(x, *stats, p["gamma"], p["beta"], training=training)
    a = F.relu(h)
    w = p["w2"] if kernel == 3 else p["w2"][:, :, :1, :1]
    return F.conv2d(a, w, stride=stride, padding=kernel // 2)


def _grads(rebuild: bool, layout: str, training: bool = True, **conv):
    x, p, stats, training = _conv_bn_relu_conv(layout, training=training)
    with set_rebuild_enabled(rebuild):
        y = _forward(x, p, stats, training, **conv)
        (y * y).sum().backward()
    return y.data, x.grad, {k: v.grad for k, v in p.items()}


@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("conv", [{}, {"stride": 2}, {"kernel": 1}], ids=["winograd", "im2col", "pointwise"])
def test_gradients_are_equal_to_the_last_bit_with_and_without_rebuild(layout, training, conv):
    y0, gx0, gp0 = _grads(False, layout, training, **conv)
    y1, gx1, gp1 = _grads(True, layout, training, **conv)
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(gx1, gx0)
    for name in gp0:
        np.testing.assert_array_equal(gp1[name], gp0[name], err_msg=name)


@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("training", [True, False])
def test_a_rebuild_gives_the_same_bits(layout, training):
    x, p, stats, training = _conv_bn_relu_conv(layout, training=training)
    x.data[0, 0, :2, :2] = 0.0  # exact zeros and values that normalize to about zero
    h = F.batch_norm(x, *stats, p["gamma"], p["beta"], training=training)
    a = F.relu(h)
    for t in (h, a):
        again = t._rebuild.make()
        assert again is not t.data
        assert again.strides == t.data.strides
        np.testing.assert_array_equal(again, t.data)


@pytest.mark.parametrize("rebuild", [True, False])
def test_the_relu_output_between_batch_norm_and_a_convolution_is_freed_after_forward(rebuild):
    x, p, stats, _ = _conv_bn_relu_conv("channels_last")
    with set_rebuild_enabled(rebuild):
        a = F.relu(F.batch_norm(x, *stats, p["gamma"], p["beta"], training=True))
        kept = weakref.ref(a.data)
        y = F.conv2d(a, p["w2"], padding=1)
        del a
        assert (kept() is None) is rebuild
        y.sum().backward()
    assert kept() is None
    assert p["w2"].grad is not None


def test_arrays_below_the_threshold_are_kept(monkeypatch):
    x, p, stats, _ = _conv_bn_relu_conv("channels_last")
    a = F.relu(F.batch_norm(x, *stats, p["gamma"], p["beta"], training=True))
    monkeypatch.setattr(function, "REBUILD_MIN_BYTES", a.data.nbytes + 1)
    kept = weakref.ref(a.data)
    y = F.conv2d(a, p["w2"], padding=1)
    del a
    assert kept() is not None
    monkeypatch.setattr(function, "REBUILD_MIN_BYTES", y.data.nbytes)
    z = F.conv2d(F.relu(F.batch_norm(y, None, None, training=True)), p["w2"][:, :8, :1, :1])
    assert isinstance(z._ctx.saved[0], function.Rebuild)


def test_nothing_but_the_graph_keeps_batch_norms_input_alive():
    """The rebuild holds arrays, not its Function: dropping the output frees everything by
    reference counting alone (no cycle for the garbage collector)."""
    x, p, stats, _ = _conv_bn_relu_conv("channels_last")
    gc.disable()
    try:
        h = F.batch_norm(x * 1.0, *stats, p["gamma"], p["beta"], training=True)
        y = F.conv2d(F.relu(h), p["w2"], padding=1)
        saved_input = weakref.ref(h._ctx.saved[0])
        del h
        assert saved_input() is not None
        del y
        assert saved_input() is None
    finally:
        gc.enable()


def test_a_second_backward_with_retain_graph_rebuilds_again():
    x, p, stats, training = _conv_bn_relu_conv("channels_last")
    y = _forward(x, p, stats, training)
    loss = (y * y).sum()
    loss.backward(retain_graph=True)
    first = p["w2"].grad.copy()
    loss.backward()
    np.testing.assert_allclose(p["w2"].grad, 2 * first, rtol=1e-6)


def test_replaced_data_is_kept_as_it_is_not_rebuilt():
    x, p, stats, _ = _conv_bn_relu_conv("channels_last")
    a = F.relu(F.batch_norm(x, *stats, p["gamma"], p["beta"], training=True))
    a.data = np.full_like(a.data, 2.0)
    F.conv2d(a, p["w2"], padding=1).sum().backward()
    # dL/dw[o, c, i, j] = Σ over outputs of the input under tap (i, j): 2 × the number of
    # in-bounds positions, the same for every o and c
    w_grad = p["w2"].grad
    assert np.all(w_grad == w_grad[0, 0])
    assert w_grad[0, 0, 1, 1] == 2.0 * 4 * 24 * 24


def test_an_op_that_keeps_the_same_input_twice_rebuilds_it_once():
    x, p, stats, _ = _conv_bn_relu_conv("channels_last")
    a = F.relu(F.batch_norm(x, *stats, p["gamma"], p["beta"], training=True))
    calls = []
    make = a._rebuild.make
    a._rebuild.make = lambda: calls.append(1) or make()
    (a * a).sum().backward()
    assert len(calls) == 1
    grad_with = x.grad.copy()
    x.grad = None
    with set_rebuild_enabled(False):
        expected = F.relu(F.batch_norm(x, *stats, p["gamma"], p["beta"], training=True))
        (expected * expected).sum().backward()
    np.testing.assert_array_equal(grad_with, x.grad)


def test_gradcheck_through_batch_norm_relu_and_a_convolution():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 8, 6, 6))
    w = rng.standard_normal((4, 8, 3, 3)) * 0.3
    gamma = rng.uniform(0.5, 1.5, 8)
    beta = rng.standard_normal(8) * 0.1

    def fn(x, w, gamma, beta):
        h = F.batch_norm(x, None, None, gamma, beta, training=True)
        return F.conv2d(F.relu(h), w, padding=1)

    assert gradcheck(fn, [x, w, gamma, beta])


def test_a_residual_network_trains_the_same_with_and_without_rebuild():
    def run(rebuild: bool):
        gc_.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.BasicBlock(16, 16), nn.BasicBlock(16, 32, stride=2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
        )
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        rng = np.random.default_rng(0)
        with set_rebuild_enabled(rebuild):
            for _ in range(3):
                x = gc_.tensor(rng.standard_normal((8, 1, 28, 28)).astype(np.float32))
                y = gc_.tensor(rng.integers(0, 10, 8))
                opt.zero_grad()
                nn.CrossEntropyLoss()(model(x), y).backward()
                opt.step()
        return [p.data.copy() for p in model.parameters()]

    for with_rebuild, without in zip(run(True), run(False)):
        np.testing.assert_array_equal(with_rebuild, without)


def test_the_switch_is_a_context_manager_and_a_decorator():
    assert is_rebuild_enabled()
    with set_rebuild_enabled(False):
        assert not is_rebuild_enabled()
        with set_rebuild_enabled(True):
            assert is_rebuild_enabled()
        assert not is_rebuild_enabled()
    assert is_rebuild_enabled()

    @set_rebuild_enabled(False)
    def inside():
        return is_rebuild_enabled()

    assert inside() is False
    assert is_rebuild_enabled()
