import json

import numpy as np
import pytest

import gradcraft
from gradcraft import nn, optim
from gradcraft.data import ArrayDataset, DataLoader
from gradcraft.diagnostics import Monitor, TrainingMonitor
from gradcraft.train import NonFiniteLossError, Trainer
from gradcraft.train.callbacks import JSONLLogger

from .synthetic import blobs, he, mlp, teacher


def _fit(model, make_opt, data, epochs, tmp_path=None, every=5, batch=50, make_sched=None, **monitor_kw):
    (x, y), (xv, yv) = data
    gradcraft.manual_seed(0)
    train = DataLoader(ArrayDataset(x, y), batch_size=batch, shuffle=True, generator=np.random.default_rng(0))
    val = DataLoader(ArrayDataset(xv, yv), batch_size=500)
    monitor = Monitor(every_steps=every, verbose=False, **monitor_kw)
    callbacks = [monitor]
    if tmp_path is not None:
        callbacks.append(JSONLLogger(tmp_path / "metrics.jsonl", every_steps=None))
    opt = make_opt(model.parameters())
    sched = make_sched(opt) if make_sched is not None else None
    trainer = Trainer(model, nn.CrossEntropyLoss(), opt, sched, train, val, callbacks,
                      scheduler_interval="step", run_dir=tmp_path, verbose=False)
    return trainer, monitor


def _checks(monitor):
    return {f.check: f for f in monitor.findings}


def test_healthy_run_raises_no_problem_and_logs_monitor_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    trainer, monitor = _fit(mlp([32], nn.ReLU, weight_init=he), lambda p: optim.SGD(p, lr=0.05, momentum=0.9),
                            (blobs(500), blobs(300, seed=1)), epochs=3, tmp_path=tmp_path)
    history = trainer.fit(3)
    assert all(f.verdict != "problem" for f in monitor.findings), [f.line() for f in monitor.findings]
    assert _checks(monitor)["learning_curves"].details["diagnosis"] == "good_fit"
    for name in ("train_eval_loss", "train_eval_accuracy", "monitor_update_ratio", "monitor_dead_fraction",
                 "monitor_grad_norm"):
        assert len(history[name]) == 3
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "finding" and r["check"] == "learning_curves" for r in lines)
    assert any(r["kind"] == "epoch" and "monitor_update_ratio" in r for r in lines)
    diag = tmp_path / "diagnosis"
    assert (diag / "diagnosis.md").read_text().startswith("# Diagnosis")
    for png in ("activations_start.png", "activations_end.png", "update_ratios.png", "learning_curves.png"):
        assert (diag / png).stat().st_size > 0
    section = monitor.report_section(tmp_path)
    assert section.startswith("## Diagnosis") and "diagnosis/update_ratios.png" in section


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_lr_10_diverges_and_the_nan_is_blamed_on_the_learning_rate():
    trainer, monitor = _fit(mlp([32, 32], nn.ReLU, weight_init=he), lambda p: optim.SGD(p, lr=10.0),
                            (blobs(500), blobs(300, seed=1)), epochs=3)
    with pytest.raises(NonFiniteLossError):
        trainer.fit(3)
    nan = _checks(monitor)["nan"]
    assert nan.verdict == "problem" and nan.details["likely_cause"] == "learning_rate"
    assert "lr 10" in nan.summary and "Lower the learning rate" in nan.remedy


def test_a_tiny_learning_rate_is_flagged():
    trainer, monitor = _fit(mlp([32, 32], nn.ReLU, weight_init=he), lambda p: optim.SGD(p, lr=1e-6),
                            (blobs(500), blobs(300, seed=1)), epochs=2, settle_steps=0)
    trainer.fit(2)
    ratio = _checks(monitor)["update_ratio"]
    assert ratio.verdict == "warning" and "far below" in ratio.summary
    assert "Raise the learning rate" in ratio.remedy


def test_small_updates_while_the_learning_rate_warms_up_are_not_flagged():
    # the same start, but the rate is climbing 10^5-fold over 2,000 steps (200 epochs)
    trainer, monitor = _fit(mlp([32, 32], nn.ReLU, weight_init=he), lambda p: optim.SGD(p, lr=0.1),
                            (blobs(500), blobs(300, seed=1)), epochs=2, settle_steps=0,
                            make_sched=lambda o: optim.lr_scheduler.LinearLR(o, 1e-5, 1.0, total_iters=2000))
    trainer.fit(2)
    assert not any("far below" in f.summary for f in monitor.findings)


def test_one_hidden_unit_underfits():
    trainer, monitor = _fit(mlp([1], nn.ReLU), lambda p: optim.Adam(p, lr=0.01),
                            (blobs(500, sep=0.7), blobs(300, sep=0.7, seed=1)), epochs=4)
    trainer.fit(4)
    curves = _checks(monitor)["learning_curves"]
    assert curves.details["diagnosis"] == "underfitting" and "capacity" in curves.remedy


def test_large_model_on_200_samples_overfits():
    trainer, monitor = _fit(mlp([256, 256], nn.ReLU, d=30, weight_init=he), lambda p: optim.Adam(p, lr=3e-3),
                            (teacher(200), teacher(500, seed=1)), epochs=12, every=10)
    trainer.fit(12)
    curves = _checks(monitor)["learning_curves"]
    assert curves.details["diagnosis"] == "overfitting"
    assert curves.details["train_accuracy"] > 0.95 and curves.details["gap"] > 0.2
    assert "regularization" in curves.remedy and "early" in curves.remedy


def test_hooks_are_attached_only_on_sampled_steps():
    model = mlp([8], nn.ReLU)
    mon = TrainingMonitor(every_steps=4)
    attached = []
    opt = optim.SGD(model.parameters(), lr=0.1)
    x, y = blobs(16)
    for step in range(1, 10):
        mon.before_step(model, step)
        attached.append(bool(model[1]._forward_hooks))
        loss = nn.CrossEntropyLoss()(model(gradcraft.Tensor(x)), gradcraft.Tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon.after_step(model, step, float(loss.item()), lr=0.1, epoch=0)
        assert not model[1]._forward_hooks
    assert attached == [True, False, False, True, False, False, False, True, False]
    assert [e["step"] for e in mon.timeline] == [1, 4, 8]
    assert all(v > 0 for v in mon.timeline[1]["update"].values())


def test_loss_explosion_is_caught_with_its_cause():
    mon = TrainingMonitor(every_steps=100)
    model = mlp([4], nn.ReLU)
    new = []
    for step, loss in enumerate([2.0, 1.5, 1.2, 1.0, 0.9, 0.8, 0.8, 3.0, 9.0, 30.0, 90.0], start=1):
        new += mon.after_step(model, step, loss, lr=0.5)
    assert [f.check for f in new] == ["loss_explosion"]
    assert "learning rate" in new[0].summary and "lr 0.5" in new[0].summary


def test_state_dict_round_trip_keeps_findings_probe_and_timeline():
    trainer, monitor = _fit(mlp([16], nn.ReLU, weight_init=he), lambda p: optim.SGD(p, lr=0.05),
                            (blobs(200), blobs(100, seed=1)), epochs=2, probe_size=64)
    trainer.fit(2)
    state = monitor.state_dict()
    other = Monitor()
    other.load_state_dict(state)
    assert [f.to_dict() for f in other.findings] == [f.to_dict() for f in monitor.findings]
    assert other.core.probe_x.shape == (64, 20) and other.core.timeline == monitor.core.timeline
    assert [s.name for s in other.core.last_activations] == ["1"]


def test_monitor_state_survives_a_checkpoint_and_resume(tmp_path):
    from gradcraft.train import ModelCheckpoint

    def build():
        gradcraft.manual_seed(0)
        (x, y), (xv, yv) = blobs(200), blobs(100, seed=1)
        model = mlp([16], nn.ReLU, weight_init=he)
        train = DataLoader(ArrayDataset(x, y), batch_size=50, shuffle=True, generator=np.random.default_rng(0))
        val = DataLoader(ArrayDataset(xv, yv), batch_size=100)
        monitor = Monitor(every_steps=3, verbose=False, probe_size=32)
        trainer = Trainer(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05), None, train, val,
                          [monitor, ModelCheckpoint(tmp_path / "ckpt", save_best=False)], verbose=False)
        return trainer, monitor

    first, _ = build()
    first.fit(1)
    second, monitor = build()
    second.fit(2, resume_from=tmp_path / "ckpt" / "last.json")
    assert monitor.core.probe_x.shape[0] == 32
    assert [e["step"] for e in monitor.core.timeline][:2] == [1, 3]
    assert len(second.history["train_eval_loss"]) == 2
    assert "learning_curves" in {f.check for f in monitor.findings}
