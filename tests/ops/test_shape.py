import numpy as np
import pytest

import gradcraft as gc
from gradcraft.autograd import gradcheck
from tests.ops._cases import compare_with_torch, torch_or_none

torch = torch_or_none()
needs_torch = pytest.mark.skipif(torch is None, reason="parity tests need PyTorch (pip install torch==2.13.0)")

rng = np.random.default_rng(2)

CASES = {
    "reshape": (lambda t: t.reshape(4, 6), lambda t: t.reshape(4, 6)),
    "reshape_infer": (lambda t: t.reshape((-1, 3)), lambda t: t.reshape(-1, 3)),
    "view": (lambda t: t.view(2, 12), lambda t: t.view(2, 12)),
    "flatten_from_1": (lambda t: t.flatten(1), lambda t: t.flatten(1)),
    "flatten_all": (lambda t: t.flatten(), lambda t: t.flatten()),
    "transpose": (lambda t: t.transpose(0, 2), lambda t: t.transpose(0, 2)),
    "T": (lambda t: t.T, lambda t: t.permute(2, 1, 0)),
    "permute": (lambda t: t.permute(1, 2, 0), lambda t: t.permute(1, 2, 0)),
    "unsqueeze": (lambda t: t.unsqueeze(1), lambda t: t.unsqueeze(1)),
    "unsqueeze_neg": (lambda t: t.unsqueeze(-1), lambda t: t.unsqueeze(-1)),
    "basic_slice": (lambda t: t[1:, ::2, 1], lambda t: t[1:, ::2, 1]),
    "ellipsis_none": (lambda t: t[..., None, 0], lambda t: t[..., None, 0]),
    "negative_step_free_slice": (lambda t: t[:, -2:], lambda t: t[:, -2:]),
    "int_array_index_with_repeats": (lambda t: t[[0, 1, 0, 0]], lambda t: t[[0, 1, 0, 0]]),
    "advanced_pair_index": (
        lambda t: t[np.array([0, 1, 1]), np.array([2, 0, 2])],
        lambda t: t[torch.tensor([0, 1, 1]), torch.tensor([2, 0, 2])],
    ),
    "boolean_mask": (lambda t: t[t.numpy() > 0], lambda t: t[t.detach() > 0]),
    "pad": (lambda t: t.pad(((0, 0), (1, 2), (2, 1))), lambda t: torch.nn.functional.pad(t, (2, 1, 1, 2))),
    "split_pieces": (lambda t: t.split(1, axis=1)[1] * t.split([2, 2], axis=1)[0][:, :1], lambda t: t.split(1, dim=1)[1] * t.split([2, 2], dim=1)[0][:, :1]),
    "expand": (lambda t: t[:, :1].expand(2, 3, 4), lambda t: t[:, :1].expand(2, 3, 4)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_shape_op_gradcheck(name):
    x = rng.standard_normal((2, 4, 3))
    if name == "expand":
        x = rng.standard_normal((2, 3, 4))
    assert gradcheck(CASES[name][0], [x])


@needs_torch
@pytest.mark.parametrize("name", sorted(CASES))
def test_shape_op_matches_torch(name):
    x = rng.standard_normal((2, 3, 4)) if name == "expand" else rng.standard_normal((2, 4, 3))
    compare_with_torch(*CASES[name], [x])


@needs_torch
def test_concatenate_and_stack_match_torch():
    a, b, c = (rng.standard_normal((2, k, 3)) for k in (1, 2, 3))
    compare_with_torch(lambda *t: gc.concatenate(t, axis=1), lambda *t: torch.cat(t, dim=1), [a, b, c])
    d, e = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    compare_with_torch(lambda *t: gc.stack(t, axis=1), lambda *t: torch.stack(t, dim=1), [d, e])


def test_concatenate_and_stack_gradcheck():
    a, b = rng.standard_normal((2, 1, 3)), rng.standard_normal((2, 2, 3))
    assert gradcheck(lambda x, y: gc.concatenate([x, y], axis=1), [a, b])
    assert gradcheck(lambda x, y: gc.stack([x, y], axis=-1), [a, a + 1])


def test_squeeze_removes_only_unit_axes():
    x = gc.ones(1, 3, 1)
    assert x.squeeze().shape == (3,)
    assert x.squeeze(0).shape == (3, 1)
    assert x.squeeze(1).shape == (1, 3, 1)


def test_reshape_error_names_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 2\)"):
        gc.ones(2, 3).reshape(4, 2)


def test_getitem_with_tensor_index():
    x = gc.tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    idx = gc.tensor([2, 2, 0])
    x[idx].sum().backward()
    np.testing.assert_allclose(x.grad, [[1, 1], [0, 0], [2, 2]])


def test_split_sizes_must_add_up():
    with pytest.raises(ValueError, match="do not add up"):
        gc.ones(4, 2).split([1, 2])
