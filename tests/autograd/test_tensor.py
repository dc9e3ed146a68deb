import gc
import weakref

import numpy as np
import pytest

import gradcraft as gc_
from gradcraft import Tensor


def test_python_floats_become_float32():
    assert gc_.tensor([1.0, 2.0]).dtype == np.float32
    assert gc_.tensor(np.zeros(3, dtype=np.float64)).dtype == np.float64
    assert gc_.tensor([1, 2]).dtype.kind == "i"


def test_scalar_backward_implicit_one():
    x = gc_.tensor(3.0, requires_grad=True)
    (x * x).backward()
    assert x.grad == pytest.approx(6.0)


def test_backward_on_non_scalar_without_grad_names_the_shape():
    x = gc_.ones(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"\(2, 3\)"):
        (x * 2).backward()


def test_backward_on_tensor_without_grad_says_so():
    x = gc_.ones(2)
    with pytest.raises(RuntimeError, match="does not require grad"):
        x.sum().backward()


def test_gradients_accumulate_across_backward_calls():
    x = gc_.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [6.0, 6.0])


def test_shared_gradient_is_not_aliased_between_leaves():
    a = gc_.ones(3, requires_grad=True)
    b = gc_.ones(3, requires_grad=True)
    (a + b).sum().backward()
    a.grad *= 10  # in-place change (as gradient clipping does) must not touch b.grad
    np.testing.assert_allclose(b.grad, [1.0, 1.0, 1.0])


def test_same_tensor_used_twice_gets_summed_gradient():
    x = gc_.tensor([2.0], requires_grad=True)
    (x * x + x).sum().backward()
    np.testing.assert_allclose(x.grad, [5.0])


def test_no_grad_records_nothing():
    x = gc_.ones(2, requires_grad=True)
    with gc_.no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None
    with gc_.no_grad(), gc_.enable_grad():
        assert (x * 2).requires_grad


def test_no_grad_as_decorator():
    @gc_.no_grad()
    def f(t):
        return t * 2

    assert not f(gc_.ones(2, requires_grad=True)).requires_grad
    assert gc_.is_grad_enabled()


def test_detach_cuts_the_graph():
    x = gc_.ones(2, requires_grad=True)
    y = (x * 2).detach()
    assert not y.requires_grad and y.is_leaf


def test_thousand_layer_chain_does_not_hit_recursion_limit():
    x = gc_.tensor([1.0], requires_grad=True, dtype=np.float64)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001**5000], rtol=1e-9)


def test_graph_is_freed_after_backward_and_intermediates_released():
    x = gc_.randn(100, 100, requires_grad=True)
    h = x.exp()  # Exp keeps its output for backward
    saved = weakref.ref(h.grad_fn.saved[0])
    y = (h * 2).sum()
    del h
    gc.collect()
    assert saved() is not None  # still needed by the graph
    y.backward()
    gc.collect()
    assert saved() is None


def test_graph_does_not_keep_intermediate_outputs_alive():
    x = gc_.randn(100, 100, requires_grad=True)
    h = x + 1.0  # Add saves nothing for backward
    h_data = weakref.ref(h.data)
    y = ((h + 1.0) * 3.0).sum()
    del h
    gc.collect()
    assert h_data() is None  # only a Function's save_for_backward may keep an intermediate array
    y.backward()
    np.testing.assert_allclose(x.grad, np.full((100, 100), 3.0))


def test_retained_tensor_dropped_by_the_user_does_not_break_backward():
    x = gc_.ones(3, requires_grad=True)
    h = (x * 2).retain_grad()
    y = (h * h).sum()
    del h
    gc.collect()
    y.backward()
    np.testing.assert_allclose(x.grad, [8.0, 8.0, 8.0])


def test_second_backward_without_retain_graph_raises():
    x = gc_.ones(2, requires_grad=True)
    y = (x.exp() * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = gc_.ones(2, requires_grad=True)
    y = (x.exp() * 2).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 4 * np.e * np.ones(2), rtol=1e-6)


def test_retain_grad_keeps_intermediate_gradient():
    x = gc_.ones(3, requires_grad=True)
    h = (x * 2).retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad, [4.0, 4.0, 4.0])


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="floating"):
        gc_.tensor([1, 2], requires_grad=True)


def test_item_numpy_and_repr():
    t = gc_.tensor([[1.5]])
    assert t.item() == 1.5
    assert isinstance(t.numpy(), np.ndarray)
    assert "tensor(" in repr(t)
    with pytest.raises(ValueError, match="one element"):
        gc_.ones(2).item()


def test_float32_stays_float32_through_ops():
    x = gc_.randn(4, 3, requires_grad=True)
    y = ((x * 0.5 + 1) ** 2 / 3.0).exp().log().mean()
    y.backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32


def test_manual_seed_makes_randn_reproducible():
    gc_.manual_seed(7)
    a = gc_.randn(5).numpy().copy()
    gc_.manual_seed(7)
    np.testing.assert_array_equal(a, gc_.randn(5).numpy())


def test_ndarray_on_the_left_defers_to_tensor():
    x = gc_.ones(2, requires_grad=True)
    y = np.ones(2, dtype=np.float32) * x
    assert isinstance(y, Tensor) and y.requires_grad


_seen: list = []


class _Probe(gc_.Function):
    """Records in ``_seen`` what ``apply`` tells ``forward``."""

    def forward(self, a, b, scale=1.0):
        _seen.append((self.needs_input_grad, scale))
        return (a + b) * scale

    def backward(self, g):
        return g, g


@pytest.mark.parametrize(
    ("grads", "enabled", "expected"),
    [
        ((True, False), True, (True, False)),
        ((False, True), True, (False, True)),
        ((False, False), True, (False, False)),
        ((True, True), False, (False, False)),  # under no_grad nothing will get a gradient
    ],
)
def test_forward_sees_which_inputs_need_a_gradient(grads, enabled, expected):
    a = gc_.tensor(np.ones(3), requires_grad=grads[0])
    b = gc_.tensor(np.ones(3), requires_grad=grads[1])
    _seen.clear()
    with gc_.set_grad_enabled(enabled):
        out = _Probe.apply(a, b, scale=2.0)
    assert _seen == [(expected, 2.0)]
    assert out.requires_grad == any(expected)
    assert (out.grad_fn is not None) == any(expected)
    np.testing.assert_array_equal(out.numpy(), np.full(3, 4.0))


def test_constant_inputs_have_no_graph_edge():
    a = gc_.tensor(np.ones(3), requires_grad=True)
    out = _Probe.apply(a, np.full(3, 2.0))
    assert out.grad_fn.parents == (a, None)
    assert out.grad_fn.needs_input_grad == (True, False)
    out.sum().backward()
    np.testing.assert_array_equal(a.grad, np.ones(3))


class _DonationProbe(gc_.Function):
    """Records whether the backward pass donated its incoming gradient array."""

    def forward(self, x):
        return x * 1.0

    def backward(self, g):
        _seen.append(self.grad_donated)
        return g * 1.0


def test_gradient_is_donated_only_when_nothing_else_refers_to_it():
    x = gc_.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    w = gc_.tensor(np.full((2, 3), 2.0))
    _seen.clear()
    (_DonationProbe.apply(x) * w).sum().backward()  # Mul's backward makes a fresh array
    assert _seen == [True]

    _seen.clear()
    ((_DonationProbe.apply(x) + _DonationProbe.apply(x)) * w).sum().backward()
    assert sorted(_seen) == [False, True]  # Add hands one array to both: only the last may write

    _seen.clear()
    _DonationProbe.apply(x).sum().backward()  # sum's gradient is a read-only broadcast view
    assert _seen == [False]

    _seen.clear()
    user = np.ones((2, 3))
    _DonationProbe.apply(x).backward(user)  # the caller's array is never written
    assert _seen == [False]

    _seen.clear()
    y = _DonationProbe.apply(x)
    kept = y.reshape(6)  # the gradient of y is a view of the reshape's gradient
    (kept * gc_.tensor(np.ones(6))).sum().backward()
    assert _seen == [True]


@pytest.mark.parametrize("numba", [False, True])
def test_ops_that_write_into_a_donated_gradient_leave_other_holders_intact(numba, rng):
    from gradcraft.ops import accel
    from gradcraft.ops.activation import relu
    from gradcraft.ops.linear import linear_relu

    with accel.use_numba(numba):
        _check_donated_gradient_holders(relu, linear_relu, rng)


def _check_donated_gradient_holders(relu, linear_relu, rng):
    h = gc_.tensor(rng.standard_normal((4, 5)), requires_grad=True)
    w = rng.standard_normal((4, 5))
    z = relu(h * 1.0)
    z.retain_grad()
    (z * gc_.tensor(w)).sum().backward()
    np.testing.assert_array_equal(z.grad, w)  # retained before ReLU wrote its result into g
    np.testing.assert_array_equal(h.grad, w * (h.numpy() > 0))

    user = rng.standard_normal((4, 5))
    before = user.copy()
    h.grad = None
    relu(h * 1.0).backward(user)
    np.testing.assert_array_equal(user, before)
    np.testing.assert_array_equal(h.grad, before * (h.numpy() > 0))

    weight = gc_.tensor(rng.standard_normal((3, 5)), requires_grad=True)
    shared = linear_relu(h, weight) + linear_relu(h, weight)  # one gradient array for both
    shared.sum().backward()
    h2 = gc_.tensor(h.numpy(), requires_grad=True)
    w2 = gc_.tensor(weight.numpy(), requires_grad=True)
    (2 * linear_relu(h2, w2)).sum().backward()
    np.testing.assert_allclose(weight.grad, w2.grad, rtol=1e-12)
