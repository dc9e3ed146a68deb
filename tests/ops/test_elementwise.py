import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gradcraft as gc
from gradcraft.autograd import gradcheck
from tests.ops._cases import away_from, compare_with_torch, torch_or_none

torch = torch_or_none()
needs_torch = pytest.mark.skipif(torch is None, reason="parity tests need PyTorch (pip install torch==2.13.0)")

rng = np.random.default_rng(0)

BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b, None),
    "sub": (lambda a, b: a - b, lambda a, b: a - b, None),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, None),
    "div": (lambda a, b: a / b, lambda a, b: a / b, "positive_b"),
    "pow": (lambda a, b: a**b, lambda a, b: a**b, "positive_a"),
    "maximum": (gc.maximum, lambda a, b: torch.maximum(a, b), None),
    "minimum": (gc.minimum, lambda a, b: torch.minimum(a, b), None),
}

UNARY = {
    "neg": (lambda x: -x, lambda x: -x, None),
    "exp": (gc.exp, lambda x: x.exp(), None),
    "log": (gc.log, lambda x: x.log(), "positive"),
    "sqrt": (gc.sqrt, lambda x: x.sqrt(), "positive"),
    "abs": (gc.abs, lambda x: x.abs(), "kink0"),
    "clip": (lambda x: x.clip(-0.5, 0.7), lambda x: x.clamp(-0.5, 0.7), "kinks_clip"),
    "clip_lower_only": (lambda x: gc.clip(x, min=0.1), lambda x: x.clamp(min=0.1), "kinks_clip"),
    "pow_scalar": (lambda x: x**3, lambda x: x**3, None),
    "pow_fractional": (lambda x: x**1.5, lambda x: x**1.5, "positive"),
    "rpow": (lambda x: 2.0**x, lambda x: 2.0**x, None),
    "rsub": (lambda x: 1.0 - x, lambda x: 1.0 - x, None),
    "rdiv": (lambda x: 1.0 / x, lambda x: 1.0 / x, "positive"),
    "relu": (gc.relu, lambda x: x.relu(), "kink0"),
    "sigmoid": (gc.sigmoid, lambda x: x.sigmoid(), None),
    "tanh": (gc.tanh, lambda x: x.tanh(), None),
}

BROADCAST_PAIRS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((1,), (2, 3)), ((), (2, 3))]


def make(shape, kind=None, which=0):
    x = rng.standard_normal(shape)
    if kind == "positive" or (kind == "positive_b" and which == 1) or (kind == "positive_a" and which == 0):
        x = np.abs(x) + 0.5
    if kind == "kink0":
        x = away_from(x, [0.0])
    if kind == "kinks_clip":
        x = away_from(x, [-0.5, 0.7, 0.1])
    return x


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("shapes", BROADCAST_PAIRS, ids=str)
def test_binary_op_gradcheck_with_broadcasting(name, shapes):
    op, _, kind = BINARY[name]
    a, b = make(shapes[0], kind, 0), make(shapes[1], kind, 1)
    if name in ("maximum", "minimum"):
        b = b + 0.05  # keep away from ties, where the op is not differentiable
    assert gradcheck(op, [a, b])


@needs_torch
@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("shapes", BROADCAST_PAIRS, ids=str)
def test_binary_op_matches_torch(name, shapes):
    op, torch_op, kind = BINARY[name]
    compare_with_torch(op, torch_op, [make(shapes[0], kind, 0), make(shapes[1], kind, 1)])


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_op_gradcheck(name):
    op, _, kind = UNARY[name]
    assert gradcheck(op, [make((3, 5), kind)])


@needs_torch
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_op_matches_torch(name):
    op, torch_op, kind = UNARY[name]
    compare_with_torch(op, torch_op, [make((4, 6), kind)])


@needs_torch
def test_maximum_ties_split_the_gradient_like_torch():
    a = np.array([1.0, 2.0, 3.0])
    b = np.array([1.0, 5.0, 3.0])
    compare_with_torch(gc.maximum, torch.maximum, [a, b])
    compare_with_torch(gc.minimum, torch.minimum, [a, b])


def test_where_routes_gradients():
    cond = rng.random((3, 4)) > 0.5
    assert gradcheck(lambda a, b: gc.where(cond, a, b), [make((3, 4)), make((4,))])


@needs_torch
def test_where_matches_torch():
    cond = rng.random((3, 4)) > 0.5
    compare_with_torch(
        lambda a, b: gc.where(cond, a, b),
        lambda a, b: torch.where(torch.tensor(cond), a, b),
        [make((3, 4)), make((3, 4))],
    )


def test_broadcast_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        gc.ones(2, 3) + gc.ones(4)


def test_comparisons_return_boolean_tensors_without_grad():
    x = gc.tensor([1.0, 2.0, 3.0], requires_grad=True)
    mask = x > 1.5
    assert mask.dtype == np.bool_ and not mask.requires_grad
    np.testing.assert_array_equal((x == 2.0).numpy(), [False, True, False])
    np.testing.assert_array_equal((x <= 2.0).numpy(), [True, True, False])


def test_cast_is_differentiable_between_float_dtypes():
    x = gc.tensor(np.ones(3, dtype=np.float64), requires_grad=True)
    y = x.astype(np.float32)
    assert y.dtype == np.float32
    (y * 2).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad, 2.0)


broadcastable_shapes = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)


@settings(max_examples=30, deadline=None)
@given(shapes=broadcastable_shapes, op=st.sampled_from(["add", "sub", "mul", "div"]))
def test_property_broadcast_gradients_have_input_shapes_and_pass_gradcheck(shapes, op):
    fn = BINARY[op][0]
    a = make(shapes.input_shapes[0])
    b = np.abs(make(shapes.input_shapes[1])) + 0.5
    assert gradcheck(fn, [a, b])
