"""Loss Functions: PyTorch parity (values and gradients, every option) and gradcheck."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradcraft as gc
from gradcraft.ops import loss as L

torch = pytest.importorskip("torch", reason="PyTorch is the reference for the losses")
tF = torch.nn.functional


def _compare(ours, theirs, x, *consts, target_grad=None, atol=1e-6):
    """Compare values and input gradients (and the target's, when ``target_grad`` is given)."""
    a = gc.tensor(x, requires_grad=True)
    b = torch.tensor(x, requires_grad=True)
    extra_a, extra_b = [], []
    if target_grad is not None:
        extra_a = [gc.tensor(target_grad, requires_grad=True)]
        extra_b = [torch.tensor(target_grad, requires_grad=True)]
    out = ours(a, *extra_a, *consts)
    ref = theirs(b, *extra_b, *[torch.tensor(c) if isinstance(c, np.ndarray) else c for c in consts])
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), atol=atol, rtol=1e-6)
    w = np.random.default_rng(5).standard_normal(out.shape)
    (out * gc.tensor(w)).sum().backward()
    (ref * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(a.grad, b.grad.numpy(), atol=atol, rtol=1e-6)
    if extra_a:
        np.testing.assert_allclose(extra_a[0].grad, extra_b[0].grad.numpy(), atol=atol, rtol=1e-6)


CE_OPTIONS = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"weight": True},
    {"ignore_index": 2},
    {"weight": True, "ignore_index": 2},
    {"label_smoothing": 0.2},
    {"label_smoothing": 0.1, "weight": True, "ignore_index": 2},
    {"label_smoothing": 0.3, "weight": True, "reduction": "sum"},
    {"label_smoothing": 0.3, "weight": True, "ignore_index": 2, "reduction": "none"},
]


@pytest.mark.parametrize("opts", CE_OPTIONS, ids=lambda o: ",".join(o) or "plain")
def test_cross_entropy_with_class_indices_matches_torch(opts, rng):
    x = rng.standard_normal((7, 4)) * 3
    y = rng.integers(0, 4, 7)
    y[:3] = [2, 0, 2]
    opts = dict(opts)
    if opts.pop("weight", False):
        opts["weight"] = rng.random(4) + 0.5
    tw = {**opts, "weight": torch.tensor(opts["weight"])} if "weight" in opts else opts
    _compare(lambda a: L.cross_entropy(a, y, **opts), lambda b: tF.cross_entropy(b, torch.tensor(y), **tw), x)


@pytest.mark.parametrize("opts", [{}, {"reduction": "none"}, {"label_smoothing": 0.25, "weight": True}])
def test_cross_entropy_with_probability_targets_matches_torch(opts, rng):
    x = rng.standard_normal((5, 3))
    t = rng.random((5, 3))
    t /= t.sum(axis=1, keepdims=True)
    opts = dict(opts)
    if opts.pop("weight", False):
        opts["weight"] = rng.random(3) + 0.5
    tw = {**opts, "weight": torch.tensor(opts["weight"])} if "weight" in opts else opts
    _compare(lambda a: L.cross_entropy(a, t, **opts), lambda b: tF.cross_entropy(b, torch.tensor(t), **tw), x)


def test_cross_entropy_with_spatial_dimensions_matches_torch(rng):
    x = rng.standard_normal((2, 3, 4, 2))
    y = rng.integers(0, 3, (2, 4, 2))
    y[0, 0, 0] = -100
    for reduction in ("mean", "none"):
        _compare(
            lambda a, r=reduction: L.cross_entropy(a, y, reduction=r, label_smoothing=0.1),
            lambda b, r=reduction: tF.cross_entropy(b, torch.tensor(y), reduction=r, label_smoothing=0.1),
            x,
        )


def test_cross_entropy_passes_gradcheck(rng):
    x = rng.standard_normal((4, 3))
    y = np.array([0, 2, 1, 2])
    w = rng.random(3) + 0.5
    assert gc.gradcheck(lambda a: L.cross_entropy(a, y, weight=w, label_smoothing=0.2, ignore_index=1), [x])
    t = rng.random((4, 3))
    assert gc.gradcheck(lambda a: L.cross_entropy(a, t / t.sum(1, keepdims=True)), [x])


def test_cross_entropy_is_stable_for_huge_logits():
    x = gc.tensor(np.array([[1000.0, 0.0, -1000.0], [-1e4, 1e4, 0.0]], dtype=np.float32), requires_grad=True)
    loss = L.cross_entropy(x, np.array([0, 0]))
    assert np.isfinite(loss.item()) and loss.dtype == np.float32
    np.testing.assert_allclose(loss.item(), 1e4, rtol=1e-6)
    loss.backward()
    assert np.all(np.isfinite(x.grad))


def test_cross_entropy_of_uniform_logits_is_log_num_classes():
    loss = L.cross_entropy(gc.zeros(8, 10), np.arange(8))
    assert loss.item() == pytest.approx(math.log(10), rel=1e-6)


def test_cross_entropy_gradient_is_softmax_minus_onehot_over_n(rng):
    x = rng.standard_normal((6, 5))
    y = rng.integers(0, 5, 6)
    t = gc.tensor(x, requires_grad=True)
    L.cross_entropy(t, y).backward()
    p = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    np.testing.assert_allclose(t.grad, (p - np.eye(5)[y]) / 6, atol=1e-12)


def test_cross_entropy_rejects_out_of_range_labels(rng):
    with pytest.raises(ValueError, match=r"Expected class indices in \[0, 3\)"):
        L.cross_entropy(gc.tensor(rng.standard_normal((2, 3))), np.array([0, 3]))
    with pytest.raises(ValueError, match="Expected integer class indices of shape"):
        L.cross_entropy(gc.tensor(rng.standard_normal((2, 3))), np.array([[0], [1]]))


@pytest.mark.parametrize(
    "opts", [{}, {"reduction": "sum"}, {"reduction": "none"}, {"weight": True, "ignore_index": 1}]
)
def test_nll_loss_matches_torch(opts, rng):
    x = np.log(rng.dirichlet(np.ones(4), size=6))
    y = np.array([0, 1, 2, 3, 1, 0])
    opts = dict(opts)
    if opts.pop("weight", False):
        opts["weight"] = rng.random(4) + 0.5
    tw = {**opts, "weight": torch.tensor(opts["weight"])} if "weight" in opts else opts
    _compare(lambda a: L.nll_loss(a, y, **opts), lambda b: tF.nll_loss(b, torch.tensor(y), **tw), x)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_matches_torch(reduction, rng):
    p = rng.uniform(0.05, 0.95, (4, 3))
    t = rng.random((4, 3))
    w = rng.random(3) + 0.5
    _compare(
        lambda a, b: L.binary_cross_entropy(a, b, weight=w, reduction=reduction),
        lambda a, b: tF.binary_cross_entropy(a, b, weight=torch.tensor(w), reduction=reduction),
        p,
        target_grad=t,
    )


def test_bce_clamps_log_at_minus_100():
    loss = L.binary_cross_entropy(gc.tensor(np.array([0.0, 1.0])), np.array([1.0, 0.0]), reduction="none")
    np.testing.assert_allclose(loss.numpy(), [100.0, 100.0])


@pytest.mark.parametrize(
    "opts", [{}, {"reduction": "none"}, {"pos_weight": True}, {"pos_weight": True, "weight": True}]
)
def test_bce_with_logits_matches_torch(opts, rng):
    x = rng.standard_normal((5, 3)) * 4
    t = rng.random((5, 3))
    opts = dict(opts)
    if opts.pop("pos_weight", False):
        opts["pos_weight"] = rng.random(3) * 3
    if opts.pop("weight", False):
        opts["weight"] = rng.random((5, 3))
    topts = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in opts.items()}
    _compare(
        lambda a, b: L.binary_cross_entropy_with_logits(a, b, **opts),
        lambda a, b: tF.binary_cross_entropy_with_logits(a, b, **topts),
        x,
        target_grad=t,
    )


def test_bce_with_logits_is_stable_for_huge_logits():
    x = gc.tensor(np.array([1e4, -1e4], dtype=np.float32), requires_grad=True)
    loss = L.binary_cross_entropy_with_logits(x, np.array([0.0, 1.0], dtype=np.float32), reduction="sum")
    np.testing.assert_allclose(loss.item(), 2e4, rtol=1e-6)
    loss.backward()
    np.testing.assert_allclose(x.grad, [1.0, -1.0])


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (L.mse_loss, tF.mse_loss),
        (L.l1_loss, tF.l1_loss),
        (
            lambda a, b, reduction: L.huber_loss(a, b, reduction, delta=0.7),
            lambda a, b, reduction: tF.huber_loss(a, b, reduction=reduction, delta=0.7),
        ),
        (
            lambda a, b, reduction: L.smooth_l1_loss(a, b, reduction, beta=0.5),
            lambda a, b, reduction: tF.smooth_l1_loss(a, b, reduction=reduction, beta=0.5),
        ),
    ],
    ids=["mse", "l1", "huber", "smooth_l1"],
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_losses_match_torch(ours, theirs, reduction, rng):
    x = rng.standard_normal((4, 5))
    t = x + rng.choice([-1.5, -0.3, 0.2, 1.2], size=(4, 5))
    _compare(
        lambda a, b: ours(a, b, reduction=reduction),
        lambda a, b: theirs(a, b, reduction=reduction),
        x,
        target_grad=t,
    )


def test_regression_losses_pass_gradcheck(rng):
    x = rng.standard_normal((3, 3))
    t = x + rng.choice([-1.5, -0.3, 0.2, 1.2], size=(3, 3))
    for fn in (L.mse_loss, L.l1_loss, L.huber_loss, L.smooth_l1_loss):
        assert gc.gradcheck(fn, [x, t])


def test_regression_loss_rejects_shape_mismatch(rng):
    with pytest.raises(ValueError, match=r"Expected target of the input's shape \(4, 1\)"):
        L.mse_loss(gc.tensor(rng.standard_normal((4, 1))), rng.standard_normal(4))


@pytest.mark.parametrize(
    "opts", [{}, {"p": 2}, {"margin": 0.5, "reduction": "sum"}, {"weight": True, "reduction": "none"}]
)
def test_multi_margin_matches_torch(opts, rng):
    x = rng.standard_normal((6, 4))
    y = rng.integers(0, 4, 6)
    opts = dict(opts)
    if opts.pop("weight", False):
        opts["weight"] = rng.random(4) + 0.5
    tw = {**opts, "weight": torch.tensor(opts["weight"])} if "weight" in opts else opts
    _compare(
        lambda a: L.multi_margin_loss(a, y, **opts),
        lambda b: tF.multi_margin_loss(b, torch.tensor(y), **tw),
        x,
    )


def test_multi_margin_cs231n_form_sums_over_classes(rng):
    x = rng.standard_normal((5, 4))
    y = rng.integers(0, 4, 5)
    margins = np.maximum(0, x - x[np.arange(5), y][:, None] + 1.0)
    margins[np.arange(5), y] = 0
    expected = margins.sum() / 5
    got = L.multi_margin_loss(gc.tensor(x), y, class_reduction="sum").item()
    assert got == pytest.approx(expected, rel=1e-12)
    assert gc.gradcheck(lambda a: L.multi_margin_loss(a, y, class_reduction="sum"), [x])


def test_losses_reject_unknown_reduction(rng):
    with pytest.raises(ValueError, match="Expected reduction in"):
        L.cross_entropy(gc.tensor(rng.standard_normal((2, 3))), np.array([0, 1]), reduction="avg")
