import pytest

import gradcraft
from gradcraft import nn, optim
from gradcraft.diagnostics import ALL_CHECKS, diagnose, diagnose_report

from .synthetic import blobs, he, mlp, normal, teacher

X, Y = blobs(600)
XT, YT = blobs(200, seed=5)
XN, YN = teacher(600, label_noise=0.2)  # not separable: a too-high lr cannot hide behind a solved task


def _by_check(findings):
    out = {}
    for f in findings:
        out.setdefault(f.check, f)
    return out


FAST = {"sweep_steps": 100, "overfit_steps": 150, "subset_size": 60, "stats_batch": 128}


def test_healthy_setup_raises_no_problem():
    findings = diagnose(lambda: mlp([32], nn.ReLU, weight_init=he), nn.CrossEntropyLoss(), X, Y,
                        lambda p: optim.SGD(p, lr=0.05, momentum=0.9), test_x=XT, test_y=YT, **FAST)
    checks = {f.check for f in findings}
    assert {"data.scaling", "data.balance", "data.duplicates", "initial_loss", "activations", "gradients",
            "lr_range", "overfit_subset"} <= checks
    assert all(f.verdict != "problem" for f in findings), [f.line() for f in findings if f.verdict == "problem"]
    assert _by_check(findings)["overfit_subset"].verdict == "ok"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_lr_of_10_is_blamed_on_the_learning_rate():
    findings = diagnose(lambda: mlp([32, 32], nn.ReLU, d=30, weight_init=he), nn.CrossEntropyLoss(), XN, YN,
                        lambda p: optim.SGD(p, lr=10.0), **FAST)
    found = _by_check(findings)
    assert found["lr_range"].verdict == "problem" and "diverge" in found["lr_range"].summary
    overfit = found["overfit_subset"]
    assert overfit.verdict == "problem" and "learning rate is too high" in overfit.summary


def test_broken_init_is_named_as_the_cause_of_failing_later_checks():
    report = diagnose_report(lambda: mlp([32] * 3, nn.ReLU, weight_init=he, bias=-10.0), nn.CrossEntropyLoss(),
                             X, Y, lambda p: optim.SGD(p, lr=0.05, momentum=0.9), **FAST)
    found = _by_check(report.findings)
    assert found["activations.dead"].verdict == "problem"
    assert found["overfit_subset"].verdict == "problem"
    assert "consequence" in found["overfit_subset"].summary


def test_checks_can_be_selected_and_models_are_rebuilt_from_the_seed():
    calls = []

    def factory():
        calls.append(float(gradcraft.randn(1).item()))
        return mlp([100] * 10, nn.Tanh, weight_init=normal(0.01))

    report = diagnose_report(factory, nn.CrossEntropyLoss(), X, Y, lambda p: optim.SGD(p, lr=0.1),
                             checks=("activations", "gradients"), seed=3)
    assert {f.check for f in report.findings} == {"activations.depth", "gradients"}
    assert len(set(calls)) == 1  # every model starts from the same seed
    assert report.activations and report.params and report.lr_range is None
    assert "collapse" in report.markdown()
    assert set(ALL_CHECKS) >= {"data", "overfit"}


def test_report_saves_markdown_and_plots(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    report = diagnose_report(lambda: mlp([16], nn.Tanh), nn.CrossEntropyLoss(), X, Y,
                             lambda p: optim.Adam(p, lr=1e-2), checks=("activations", "lr_range"), sweep_steps=40)
    path = report.save(tmp_path / "diag")
    text = path.read_text()
    assert "# Diagnosis before training" in text and "lr_range.png" in text
    assert (tmp_path / "diag" / "lr_range.png").stat().st_size > 0
    assert (tmp_path / "diag" / "activations_init.png").exists()
