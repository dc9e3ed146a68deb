import numpy as np
import pytest

import gradcraft as gc
from gradcraft.autograd import gradcheck
from tests.ops._cases import compare_with_torch, torch_or_none

torch = torch_or_none()
needs_torch = pytest.mark.skipif(torch is None, reason="parity tests need PyTorch (pip install torch==2.13.0)")

rng = np.random.default_rng(3)

SHAPES = [
    ((3, 4), (4, 5)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (4, 5)),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)),
    ((3, 4), (2, 4, 5)),
]


@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_matmul_gradcheck(shapes):
    a, b = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    assert gradcheck(lambda x, y: x @ y, [a, b])


@needs_torch
@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_matmul_matches_torch(shapes):
    a, b = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    compare_with_torch(lambda x, y: x @ y, lambda x, y: x @ y, [a, b])


def test_matmul_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4\) @ \(5, 2\)"):
        gc.ones(3, 4) @ gc.ones(5, 2)


def test_matmul_with_constant_operand_only_differentiates_the_tensor():
    w = gc.randn(4, 2, requires_grad=True)
    x = np.ones((3, 4), dtype=np.float32)
    (gc.tensor(x) @ w).sum().backward()
    np.testing.assert_allclose(w.grad, np.full((4, 2), 3.0))


@pytest.mark.parametrize(
    ("shape_a", "shape_b", "message"),
    [
        ((), (3,), r"at least one dimension. Received shapes \(\) and \(3,\)"),
        ((2, 3), (), r"at least one dimension"),
        ((4,), (5,), r"inner dimensions 4 and 5 differ"),
        ((2, 3, 4), (3, 4, 2), r"cannot broadcast the batch axes of \(2, 3, 4\) @ \(3, 4, 2\)"),
    ],
)
def test_matmul_errors_say_what_is_wrong(shape_a, shape_b, message):
    with pytest.raises(ValueError, match=message) as info:
        gc.ones(*shape_a) @ gc.ones(*shape_b)
    assert "MatMul" in str(info.value)
