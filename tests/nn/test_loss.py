"""Loss modules: PyTorch parity of the module wrappers and their arguments."""

from __future__ import annotations

import numpy as np
import pytest

import gradcraft as gc
from gradcraft import nn

torch = pytest.importorskip("torch", reason="PyTorch is the reference for loss modules")


def _check(ours, theirs, x, target, torch_target=None):
    a, b = gc.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out = ours(a, target)
    ref = theirs(b, torch.tensor(target) if torch_target is None else torch_target)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-6, atol=1e-6)
    out.sum().backward()
    ref.sum().backward()
    np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_cross_entropy_loss_module_matches_torch(rng):
    x = rng.standard_normal((8, 5))
    y = rng.integers(0, 5, 8)
    w = rng.random(5) + 0.5
    _check(nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss(), x, y)
    _check(
        nn.CrossEntropyLoss(weight=w, ignore_index=1, label_smoothing=0.1, reduction="sum"),
        torch.nn.CrossEntropyLoss(
            weight=torch.tensor(w), ignore_index=1, label_smoothing=0.1, reduction="sum"
        ),
        x,
        y,
    )


def test_cross_entropy_loss_accepts_label_tensors_and_keeps_float32(rng):
    logits = gc.tensor(rng.standard_normal((4, 3)).astype(np.float32), requires_grad=True)
    loss = nn.CrossEntropyLoss()(logits, gc.tensor(np.array([0, 1, 2, 1])))
    loss.backward()
    assert loss.dtype == np.float32 and logits.grad.dtype == np.float32


def test_nll_of_log_softmax_equals_cross_entropy(rng):
    x = rng.standard_normal((6, 4))
    y = rng.integers(0, 4, 6)
    ce = nn.CrossEntropyLoss()(gc.tensor(x), y).item()
    nll = nn.NLLLoss()(nn.LogSoftmax(dim=1)(gc.tensor(x)), y).item()
    assert ce == pytest.approx(nll, rel=1e-12)
    _check(
        nn.NLLLoss(weight=np.ones(4) * 2),
        torch.nn.NLLLoss(weight=torch.ones(4, dtype=torch.float64) * 2),
        np.log(rng.dirichlet(np.ones(4), 6)),
        y,
    )


def test_binary_losses_match_torch(rng):
    t = (rng.random((5, 3)) > 0.5).astype(np.float64)
    pw = np.array([1.0, 2.0, 3.0])
    _check(nn.BCELoss(), torch.nn.BCELoss(), rng.uniform(0.1, 0.9, (5, 3)), t)
    _check(
        nn.BCEWithLogitsLoss(pos_weight=pw),
        torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pw)),
        rng.standard_normal((5, 3)),
        t,
    )


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (nn.MSELoss(), torch.nn.MSELoss()),
        (nn.L1Loss(reduction="sum"), torch.nn.L1Loss(reduction="sum")),
        (nn.HuberLoss(delta=0.5), torch.nn.HuberLoss(delta=0.5)),
        (nn.SmoothL1Loss(beta=0.5, reduction="none"), torch.nn.SmoothL1Loss(beta=0.5, reduction="none")),
    ],
    ids=["mse", "l1", "huber", "smooth_l1"],
)
def test_regression_loss_modules_match_torch(ours, theirs, rng):
    x = rng.standard_normal((4, 3))
    _check(ours, theirs, x, x + rng.choice([-1.0, -0.2, 0.3, 2.0], size=(4, 3)))


def test_multi_margin_loss_module_both_forms(rng):
    x = rng.standard_normal((6, 4))
    y = rng.integers(0, 4, 6)
    _check(nn.MultiMarginLoss(p=2, margin=0.5), torch.nn.MultiMarginLoss(p=2, margin=0.5), x, y)
    pytorch_form = nn.MultiMarginLoss()(gc.tensor(x), y).item()
    cs231n_form = nn.MultiMarginLoss(class_reduction="sum")(gc.tensor(x), y).item()
    assert cs231n_form == pytest.approx(4 * pytorch_form, rel=1e-12)


def test_loss_weight_is_a_buffer_like_torch():
    loss = nn.CrossEntropyLoss(weight=np.ones(3))
    assert list(loss.state_dict()) == ["weight"]
    assert list(nn.CrossEntropyLoss().state_dict()) == []
    with pytest.raises(ValueError, match="Expected reduction in"):
        nn.MSELoss(reduction="avg")
