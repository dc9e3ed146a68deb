"""Averaged weights: the EMA / Polyak update against torch's AveragedModel and a hand-written
reference (batch-norm buffers included), evaluation with the average, and exact resumption."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gradcraft
from gradcraft import nn
from gradcraft.autograd.tensor import Tensor
from gradcraft.ensemble import ExponentialMovingAverage, evaluated_weights, update_bn
from gradcraft.train import Callback, LambdaCallback, ModelCheckpoint, Trainer
from tests.train.helpers import make_trainer, mlp, weights

torch = pytest.importorskip("torch")
swa_utils = pytest.importorskip("torch.optim.swa_utils")


class Boom(Exception):
    """Stands in for a crash."""


def recorder(states: list[dict[str, np.ndarray]]) -> LambdaCallback:
    """Keeps the model's state_dict after every optimizer step."""
    return LambdaCallback(on_batch_end=lambda t: states.append(weights(t)), order=-25)


def torch_twin() -> Any:
    """The helpers' MLP in PyTorch, with the same state_dict names."""
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(36, 16),
        torch.nn.BatchNorm1d(16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 3),
    )


def replay(averaged: Any, twin: Any, states: list[dict[str, np.ndarray]], steps: list[int]) -> None:
    for s in steps:
        twin.load_state_dict({k: torch.tensor(v) for k, v in states[s - 1].items()})
        averaged.update_parameters(twin)


def assert_matches_torch(ema: ExponentialMovingAverage, averaged: Any) -> None:
    expected = averaged.module.state_dict()
    assert set(ema.shadow) == {k for k, v in expected.items() if v.is_floating_point()}
    assert any("running_mean" in k for k in ema.shadow)
    for key, value in ema.shadow.items():
        np.testing.assert_allclose(value, expected[key].numpy(), rtol=1e-5, atol=1e-6, err_msg=key)


def test_ema_matches_torch_averaged_model_with_buffers() -> None:
    states: list[dict[str, np.ndarray]] = []
    ema = ExponentialMovingAverage(0.8)
    trainer = make_trainer([ema, recorder(states)])
    trainer.fit(2)
    averaged = swa_utils.AveragedModel(
        torch_twin(), multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.8), use_buffers=True
    )
    replay(averaged, torch_twin(), states, list(range(1, len(states) + 1)))
    assert ema.num_updates == len(states) == 12
    assert_matches_torch(ema, averaged)


def test_polyak_is_torch_swa_average() -> None:
    states: list[dict[str, np.ndarray]] = []
    ema = ExponentialMovingAverage(mode="polyak", every_steps=2)
    make_trainer([ema, recorder(states)]).fit(2)
    averaged = swa_utils.AveragedModel(torch_twin(), use_buffers=True)
    replay(averaged, torch_twin(), states, list(range(2, len(states) + 1, 2)))
    assert ema.num_updates == 6
    assert_matches_torch(ema, averaged)
    mean = np.mean([states[s - 1]["1.weight"] for s in range(2, 13, 2)], axis=0)
    np.testing.assert_allclose(ema.shadow["1.weight"], mean, rtol=1e-5, atol=1e-7)


def test_warmup_every_k_and_start_step_follow_the_formula() -> None:
    states: list[dict[str, np.ndarray]] = []
    decay, every, start = 0.95, 3, 4
    ema = ExponentialMovingAverage(decay, warmup=True, every_steps=every, start_step=start)
    make_trainer([ema, recorder(states)]).fit(3)
    steps = [s for s in range(1, len(states) + 1) if s >= start and (s - start) % every == 0]
    assert steps == [4, 7, 10, 13, 16] and ema.num_updates == len(steps)
    ref = {k: v.astype(np.float64) for k, v in states[steps[0] - 1].items() if v.dtype.kind == "f"}
    for n, s in enumerate(steps[1:], start=1):
        d = min(decay, (1 + n) / (10 + n))
        assert ema.decay_at(n) == d
        ref = {k: d * v + (1 - d) * states[s - 1][k] for k, v in ref.items()}
    for k, v in ref.items():
        np.testing.assert_allclose(ema.shadow[k], v, rtol=1e-5, atol=1e-6, err_msg=k)
    # the torch reference with the same warmup
    averaged = swa_utils.AveragedModel(
        torch_twin(),
        avg_fn=lambda avg, cur, n: avg + (cur - avg) * (1 - min(decay, (1 + float(n)) / (10 + float(n)))),
        use_buffers=True,
    )
    replay(averaged, torch_twin(), states, steps)
    assert_matches_torch(ema, averaged)


def test_bn_copy_takes_the_training_statistics() -> None:
    states: list[dict[str, np.ndarray]] = []
    ema = ExponentialMovingAverage(0.5, bn="copy")
    make_trainer([ema, recorder(states)]).fit(1)
    np.testing.assert_array_equal(ema.shadow["2.running_mean"], states[-1]["2.running_mean"])
    np.testing.assert_array_equal(ema.shadow["2.running_var"], states[-1]["2.running_var"])
    assert not np.allclose(ema.shadow["1.weight"], states[-1]["1.weight"])  # the weights are averaged


def test_validation_uses_the_averaged_weights_and_restores_the_training_ones() -> None:
    seen: dict[str, Any] = {}

    def before(t: Trainer) -> None:
        seen["before"] = weights(t)

    def after(t: Trainer) -> None:
        seen["after"] = weights(t)

    class After(Callback):
        order = -10

        def on_epoch_end(self, trainer: Trainer) -> None:
            after(trainer)

    ema = ExponentialMovingAverage(0.9)
    trainer = make_trainer([LambdaCallback(on_epoch_end=before, order=-30), ema, After()])
    trainer.fit(3)
    for key, value in seen["before"].items():
        np.testing.assert_array_equal(seen["after"][key], value, err_msg=key)
    trained = weights(trainer)
    raw = trainer.evaluate(prefix="val")
    with ema.average_parameters(trainer.model):
        for key in ema.shadow:
            np.testing.assert_array_equal(trainer.model.state_dict()[key], ema.shadow[key])
        averaged = trainer.evaluate(prefix="val")
    for key, value in trained.items():  # swapped back, bit for bit
        np.testing.assert_array_equal(weights(trainer)[key], value, err_msg=key)
    assert trainer.history["val_loss"][-1] == pytest.approx(averaged["val_loss"])
    assert trainer.history["raw_val_loss"][-1] == pytest.approx(raw["val_loss"])
    assert averaged["val_loss"] != pytest.approx(raw["val_loss"])


def test_average_parameters_restores_after_an_exception() -> None:
    trainer = make_trainer([ExponentialMovingAverage(0.5)])
    trainer.fit(1)
    ema = trainer.callbacks[0]
    trained = weights(trainer)
    with pytest.raises(Boom), ema.average_parameters(trainer.model):
        raise Boom
    for key, value in trained.items():
        np.testing.assert_array_equal(weights(trainer)[key], value)


def test_ema_state_survives_a_checkpoint_and_resume(tmp_path: Path) -> None:
    reference = ExponentialMovingAverage(0.9, warmup=True, every_steps=2)
    make_trainer([reference, ModelCheckpoint(tmp_path / "ref", every_steps=5)], seed=3).fit(3)

    def crash(t: Trainer) -> None:
        if t.global_step == 11:
            raise Boom

    crashed = ExponentialMovingAverage(0.9, warmup=True, every_steps=2)
    trainer = make_trainer(
        [
            crashed,
            ModelCheckpoint(tmp_path / "run", every_steps=5),
            LambdaCallback(on_batch_end=crash, order=1000),
        ],
        seed=3,
    )
    with pytest.raises(Boom):
        trainer.fit(3)
    gradcraft.manual_seed(99)
    resumed = ExponentialMovingAverage(0.9, warmup=True, every_steps=2)
    again = make_trainer([resumed, ModelCheckpoint(tmp_path / "run", every_steps=5)], seed=3)
    again.fit(3, resume_from=tmp_path / "run" / "last.json")
    assert resumed.num_updates == reference.num_updates == 9
    for key, value in reference.shadow.items():
        np.testing.assert_array_equal(resumed.shadow[key], value, err_msg=key)


def test_checkpoints_are_evaluated_with_the_averaged_weights(tmp_path: Path) -> None:
    from gradcraft.io.checkpoint import load_checkpoint, unpack_state

    ema = ExponentialMovingAverage(0.9)
    trainer = make_trainer([ema, ModelCheckpoint(tmp_path)])
    trainer.fit(2)
    ckpt = load_checkpoint(tmp_path / "last.json")
    state = unpack_state(ckpt.meta["trainer"], ckpt.arrays)
    chosen = evaluated_weights(state)
    for key, value in ema.shadow.items():
        np.testing.assert_array_equal(chosen[key], value)
        assert key in state["model"]
    np.testing.assert_array_equal(chosen["2.num_batches_tracked"], state["model"]["2.num_batches_tracked"])
    assert not np.array_equal(state["model"]["1.weight"], chosen["1.weight"])  # training weights differ


def test_update_bn_recomputes_cumulative_statistics_like_torch() -> None:
    rng = np.random.default_rng(0)
    batches = [rng.normal(1.0, 2.0, (16, 4)).astype(np.float32) for _ in range(5)]
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Dropout(0.5), nn.Linear(6, 2))
    frozen = nn.BatchNorm1d(2)
    frozen.requires_grad_(False)
    frozen.running_mean.data[...] = 7.0
    model = nn.Sequential(net, frozen)
    model.train()
    assert update_bn([(Tensor(b), None) for b in batches], model) == 5
    twin = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6))
    twin.load_state_dict(
        {k: torch.tensor(v) for k, v in net.state_dict().items() if k.startswith(("0.", "1."))}
    )
    swa_utils.update_bn([torch.tensor(b) for b in batches], twin)
    np.testing.assert_allclose(net[1].running_mean.numpy(), twin[1].running_mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(net[1].running_var.numpy(), twin[1].running_var.numpy(), rtol=1e-5)
    np.testing.assert_array_equal(frozen.running_mean.numpy(), 7.0)  # frozen layers keep theirs
    assert model.training and net[1].momentum == 0.1  # modes and momenta restored
    assert update_bn([], nn.Sequential(nn.Linear(2, 2))) == 0


def test_recompute_bn_keeps_recomputed_statistics_in_the_average() -> None:
    rng = np.random.default_rng(0)
    data = [(Tensor(rng.random((32, 1, 6, 6)).astype(np.float32)), None) for _ in range(3)]
    ema = ExponentialMovingAverage(0.9, bn="recompute", bn_loader=data)
    trainer = make_trainer([ema])
    trainer.fit(1)
    with ema.average_parameters(trainer.model):
        recomputed = trainer.model.state_dict()["2.running_mean"]
    np.testing.assert_array_equal(ema.shadow["2.running_mean"], recomputed)
    # by hand: a fresh copy of the network with the averaged weights, statistics from the data
    probe = mlp()
    probe.load_state_dict({**weights(trainer), **ema.shadow})
    probe.eval()
    assert update_bn(data, probe) == 3
    np.testing.assert_allclose(probe.state_dict()["2.running_mean"], recomputed, rtol=1e-6)
    assert not np.allclose(weights(trainer)["2.running_mean"], recomputed)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"decay": 1.0}, "Expected 0 <= decay < 1"),
        ({"mode": "swa"}, "Expected mode 'ema' or 'polyak'"),
        ({"every_steps": 0}, "Expected an integer every_steps >= 1"),
        ({"start_step": -1}, "Expected an integer start_step >= 0"),
        ({"bn": "freeze"}, "Expected bn 'average', 'copy' or 'recompute'"),
        ({"bn": "recompute"}, "Expected a bn_loader"),
    ],
)
def test_bad_settings_are_explained(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExponentialMovingAverage(**kwargs)
