"""Ensemble: averaging, logit averaging and voting on hand-built models with known outputs."""

from __future__ import annotations

import numpy as np
import pytest

from gradcraft import nn
from gradcraft.autograd.tensor import Tensor
from gradcraft.ensemble import Ensemble, Member


class Lookup(nn.Module):
    """Outputs row ``int(x[i, 0])`` of a fixed logit table: a model whose outputs we choose."""

    def __init__(self, table: np.ndarray) -> None:
        super().__init__()
        self.table = np.asarray(table, dtype=np.float32)
        self.scale = nn.Parameter(np.ones(1, dtype=np.float32))

    def forward(self, x: Tensor) -> Tensor:
        idx = x.numpy()[:, 0].astype(np.int64)
        return Tensor(self.table[idx]) * self.scale


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# three members, four examples, three classes
A = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 0.0, 0.9], [0.0, 0.0, 1.0]])
B = np.array([[0.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 1.0, 0.0], [4.0, 0.0, 0.0]])
C = np.array([[0.0, 1.2, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.5]])
X = np.arange(4, dtype=np.float32)[:, None]
Y = np.array([1, 1, 2, 2])


def members() -> list[nn.Module]:
    return [Lookup(A), Lookup(B), Lookup(C)]


def test_mean_prob_averages_the_members_probabilities() -> None:
    ens = Ensemble(members(), combine="mean_prob")
    expected = (softmax(A) + softmax(B) + softmax(C)) / 3
    np.testing.assert_allclose(ens.predict_proba(X), expected, rtol=1e-6)
    np.testing.assert_allclose(np.exp(ens(Tensor(X)).numpy()), expected, rtol=1e-5)


def test_mean_logit_is_the_softmax_of_the_mean_logits() -> None:
    ens = Ensemble(members(), combine="mean_logit")
    np.testing.assert_allclose(ens.predict_proba(X), softmax((A + B + C) / 3), rtol=1e-6)


def test_vote_takes_the_majority_and_breaks_ties_by_mean_probability() -> None:
    votes = Ensemble(members(), combine="vote").predict_proba(X)
    # row 0: A votes 0, B and C vote 1 -> 1; row 2: A votes 0, B 1, C 2 -> a three-way tie
    assert votes.argmax(axis=1).tolist()[:2] == [1, 1]
    mean_p = (softmax(A) + softmax(B) + softmax(C)) / 3
    assert votes[2].argmax() == mean_p[2].argmax() == 2
    np.testing.assert_allclose(votes[0], [1 / 3, 2 / 3, 0.0], atol=1e-5)
    np.testing.assert_allclose(votes.sum(axis=1), 1.0)
    # two members that disagree: the tie goes to the class with the larger mean probability
    tie = Ensemble([Lookup(A), Lookup(B)], combine="vote").predict_proba(X[3:])
    assert tie.argmax() == ((softmax(A[3:]) + softmax(B[3:])) / 2).argmax() == 0


def test_weights_tilt_the_average() -> None:
    ens = Ensemble(members(), combine="mean_prob", weights=[2.0, 1.0, 1.0])
    expected = (2 * softmax(A) + softmax(B) + softmax(C)) / 4
    np.testing.assert_allclose(ens.predict_proba(X), expected, rtol=1e-6)
    # a majority by weight beats a majority by count
    weighted_vote = Ensemble(members(), combine="vote", weights=[3.0, 1.0, 1.0]).predict_proba(X)
    assert weighted_vote[0].argmax() == 0


def test_evaluate_reports_each_member_and_the_ensemble() -> None:
    ens = Ensemble([Member(Lookup(A), "a"), Member(Lookup(B), "b"), Member(Lookup(C), "c")])
    result = ens.evaluate((X, Y), batch_size=3)
    preds = [m.argmax(axis=1) for m in (A, B, C)]
    assert result.member_accuracy == pytest.approx([float(np.mean(p == Y)) for p in preds])
    mean_p = (softmax(A) + softmax(B) + softmax(C)) / 3
    assert result.accuracy == pytest.approx(float(np.mean(mean_p.argmax(axis=1) == Y)))
    rows = np.arange(4)
    assert result.loss == pytest.approx(float(-np.log(mean_p[rows, Y]).mean()), rel=1e-6)
    assert result.member_loss[0] == pytest.approx(float(-np.log(softmax(A)[rows, Y]).mean()), rel=1e-6)
    assert result.n == 4
    table = result.table()
    assert "ensemble (mean of probabilities)" in table
    assert f"{100 * result.accuracy:.2f}%" in table and table.splitlines()[1].lstrip().startswith("a ")


def test_cross_entropy_of_the_output_is_the_ensemble_loss() -> None:
    ens = Ensemble(members())
    loss = nn.CrossEntropyLoss()(ens(Tensor(X)), Tensor(Y))
    assert float(loss.numpy()) == pytest.approx(ens.evaluate((X, Y)).loss, rel=1e-5)


def test_members_must_agree_on_the_number_of_classes() -> None:
    ens = Ensemble([Member(Lookup(A), "three"), Member(Lookup(A[:, :2]), "two")])
    with pytest.raises(ValueError, match=r"same number of classes.*3 from 'three', 2 from 'two'"):
        ens.predict_proba(X)


def test_each_member_gets_its_own_preprocessing() -> None:
    shift = Member(Lookup(A), "shifted", preprocess=lambda x: x + 1)
    ens = Ensemble([shift])
    np.testing.assert_allclose(ens.predict_proba(X[:3]), softmax(A[1:4]), rtol=1e-6)


def test_members_run_in_eval_mode_without_a_graph() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3))
    assert net.training
    ens = Ensemble([net, net])
    assert not net.training and not ens.training
    x = np.random.default_rng(0).random((5, 4)).astype(np.float32)
    first, second = ens(Tensor(x)), ens(Tensor(x))
    np.testing.assert_array_equal(first.numpy(), second.numpy())  # dropout off, running stats used
    assert not first.requires_grad
    with pytest.raises(RuntimeError, match="evaluation mode"):
        ens.train()
    ens.eval()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"combine": "median"}, "Expected combine in"),
        ({"weights": [1.0]}, "Expected 3 non-negative weights"),
        ({"weights": [1.0, -1.0, 1.0]}, "Expected 3 non-negative weights"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Ensemble(members(), **kwargs)
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble([])
