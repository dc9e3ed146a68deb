"""BatchNorm1d/2d and LayerNorm layers against PyTorch, including running statistics."""

from __future__ import annotations

import numpy as np
import pytest

import gradcraft as gc
from gradcraft import nn
from gradcraft.backend import default_dtype_as

torch = pytest.importorskip("torch", reason="PyTorch is the reference for normalization layers")


def _pair(ours_cls, theirs_cls, *args, **kwargs):
    with default_dtype_as(np.float64):
        ours = ours_cls(*args, **kwargs)
    theirs = theirs_cls(*args, **kwargs).double()
    return ours, theirs


def _step(ours, theirs, x, g):
    a, b = gc.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, ref = ours(a), theirs(b)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), atol=1e-6, rtol=1e-6)
    out.backward(g)
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(a.grad, b.grad.numpy(), atol=1e-6, rtol=1e-6)
    for (name, p), tp in zip(ours.named_parameters(), theirs.parameters()):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), atol=1e-6, rtol=1e-6, err_msg=name)


def _assert_same_state(ours, theirs):
    theirs_sd = theirs.state_dict()
    assert list(ours.state_dict()) == list(theirs_sd)
    for key, value in ours.state_dict().items():
        np.testing.assert_allclose(value, theirs_sd[key].numpy(), atol=1e-6, rtol=1e-6, err_msg=key)


CASES = [
    (nn.BatchNorm1d, torch.nn.BatchNorm1d, (16, 4), {}),
    (nn.BatchNorm1d, torch.nn.BatchNorm1d, (8, 4, 5), {}),
    (nn.BatchNorm2d, torch.nn.BatchNorm2d, (6, 4, 3, 3), {}),
    (nn.BatchNorm2d, torch.nn.BatchNorm2d, (6, 4, 3, 3), {"momentum": None}),
    (nn.BatchNorm2d, torch.nn.BatchNorm2d, (6, 4, 3, 3), {"momentum": 0.3, "eps": 1e-3}),
    (nn.BatchNorm1d, torch.nn.BatchNorm1d, (16, 4), {"affine": False}),
    (nn.BatchNorm2d, torch.nn.BatchNorm2d, (6, 4, 3, 3), {"track_running_stats": False}),
]
CASE_IDS = ["1d_NC", "1d_NCL", "2d", "2d_cumulative", "2d_momentum_eps", "1d_no_affine", "2d_no_tracking"]


@pytest.mark.parametrize(("ours_cls", "theirs_cls", "shape", "kwargs"), CASES, ids=CASE_IDS)
def test_batchnorm_matches_torch_over_several_training_steps_and_in_eval(
    ours_cls, theirs_cls, shape, kwargs, rng
):
    ours, theirs = _pair(ours_cls, theirs_cls, 4, **kwargs)
    if kwargs.get("affine", True):
        w, b = rng.random(4) + 0.5, rng.standard_normal(4)
        theirs.weight.data = torch.tensor(w)
        theirs.bias.data = torch.tensor(b)
        ours.load_state_dict(theirs.state_dict())
    for _ in range(5):
        x = rng.standard_normal(shape) * 3 + rng.standard_normal(shape[1]).reshape(
            (1, -1) + (1,) * (len(shape) - 2)
        )
        _step(ours, theirs, x, rng.standard_normal(shape))
        ours.zero_grad()
        theirs.zero_grad()
    _assert_same_state(ours, theirs)
    ours.eval()
    theirs.eval()
    _step(ours, theirs, rng.standard_normal(shape), rng.standard_normal(shape))
    _assert_same_state(ours, theirs)


def test_batchnorm_eval_uses_running_stats(rng):
    bn = nn.BatchNorm1d(3, dtype=np.float64)
    bn.running_mean.data[:] = [1.0, -2.0, 0.5]
    bn.running_var.data[:] = [4.0, 0.25, 1.0]
    bn.eval()
    x = rng.standard_normal((1, 3))  # a batch of one works in eval
    expected = (x - bn.running_mean.numpy()) / np.sqrt(bn.running_var.numpy() + 1e-5)
    np.testing.assert_allclose(bn(gc.tensor(x)).numpy(), expected, rtol=1e-12)
    assert int(bn.num_batches_tracked.item()) == 0


def test_batchnorm_train_normalizes_and_counts_batches(rng):
    bn = nn.BatchNorm2d(3)
    y = bn(gc.tensor(rng.standard_normal((8, 3, 4, 4)).astype(np.float32) * 5 + 2)).numpy()
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    assert int(bn.num_batches_tracked.item()) == 1


def test_batchnorm_passes_gradcheck_in_train_and_eval(rng):
    bn = nn.BatchNorm1d(3, dtype=np.float64, momentum=0.0)
    bn.weight.data[:] = [0.5, 1.5, 2.0]
    x = rng.standard_normal((4, 3, 2))
    assert gc.gradcheck(lambda a: bn(a), [x])
    bn.eval()
    assert gc.gradcheck(lambda a: bn(a), [x])


def test_batchnorm_rejects_wrong_channels_and_rank(rng):
    with pytest.raises(
        ValueError, match=r"Expected input with 4 channels on axis 1. Received: shape=\(2, 3\)"
    ):
        nn.BatchNorm1d(4)(gc.randn(2, 3))
    with pytest.raises(ValueError, match=r"Expected \(N, C, H, W\) input"):
        nn.BatchNorm2d(4)(gc.randn(2, 4))


def test_batchnorm_state_dict_names_and_repr():
    bn = nn.BatchNorm2d(8)
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert repr(bn) == "BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"


@pytest.mark.parametrize(
    ("shape", "norm_shape", "kwargs"),
    [
        ((4, 6), 6, {}),
        ((2, 3, 4, 5), (4, 5), {}),
        ((3, 5), 5, {"elementwise_affine": False}),
        ((3, 5), 5, {"bias": False}),
    ],
)
def test_layernorm_matches_torch(shape, norm_shape, kwargs, rng):
    ours, theirs = _pair(nn.LayerNorm, torch.nn.LayerNorm, norm_shape, **kwargs)
    if theirs.weight is not None:
        theirs.weight.data = torch.tensor(rng.random(theirs.weight.shape) + 0.5)
    if theirs.bias is not None:
        theirs.bias.data = torch.tensor(rng.standard_normal(theirs.bias.shape))
    ours.load_state_dict(theirs.state_dict())
    _step(ours, theirs, rng.standard_normal(shape) * 2 + 1, rng.standard_normal(shape))
    ours.eval()
    theirs.eval()
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(
        ours(gc.tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(), atol=1e-6
    )


def test_layernorm_passes_gradcheck(rng):
    ln = nn.LayerNorm((2, 3), dtype=np.float64)
    ln.weight.data[:] = rng.random((2, 3)) + 0.5
    assert gc.gradcheck(lambda a: ln(a), [rng.standard_normal((3, 2, 3))])
