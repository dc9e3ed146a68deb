"""Transfer learning: blocks, loading with a replaced head, freezing (batch norm included),
per-block learning rates, gradual unfreezing and the strategy table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gradcraft
from gradcraft import nn, optim
from gradcraft.autograd.tensor import Tensor
from gradcraft.data import DataLoader
from gradcraft.models import build_model
from gradcraft.optim import lr_scheduler
from gradcraft.train import Callback, LambdaCallback, ModelCheckpoint, Trainer
from gradcraft.transfer import (
    STRATEGY_TABLE,
    GradualUnfreezing,
    blocks,
    choose_strategy,
    describe_blocks,
    freeze,
    frozen_block_count,
    frozen_parameters,
    load_pretrained,
    param_groups,
    replace_head,
    unfreeze,
)
from tests.train.helpers import blobs


def deep(classes: int = 3, width: int = 12) -> nn.Sequential:
    """Four blocks: [flatten, linear, bn, relu], [linear, bn, relu], [linear, relu], [linear]."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(36, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Linear(16, width),
        nn.BatchNorm1d(width),
        nn.ReLU(),
        nn.Linear(width, 8),
        nn.ReLU(),
        nn.Linear(8, classes),
    )


def state(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in model.state_dict().items()}


def trainer_for(model: nn.Module, optimizer: Any, callbacks: Any = (), seed: int = 0) -> Trainer:
    data = blobs(240, seed=seed)
    train = DataLoader(
        data.subset(np.arange(180)), 32, shuffle=True, generator=np.random.default_rng([seed, 1])
    )
    val = DataLoader(data.subset(np.arange(180, 240)), 60, generator=np.random.default_rng([seed, 2]))
    return Trainer(model, nn.CrossEntropyLoss(), optimizer, None, train, val, list(callbacks), verbose=False)


# ---------------------------------------------------------------------------- blocks
def test_blocks_group_each_weight_layer_with_the_layers_after_it() -> None:
    got = blocks(deep())
    assert [b.layers for b in got] == [("0", "1", "2", "3"), ("4", "5", "6"), ("7", "8"), ("9",)]
    assert got[0].kinds == ("Flatten", "Linear", "BatchNorm1d", "ReLU")
    assert got[1].owns("4.weight") and got[1].owns("5.running_mean") and not got[1].owns("45.weight")
    cnn = build_model({"block": "cnn", "widths": [4, 8], "hidden": [16], "norm": "batchnorm"}, (1, 8, 8), 3)
    assert [b.kinds for b in blocks(cnn)] == [
        ("Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"),
        ("Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Flatten"),
        ("Linear", "BatchNorm1d", "ReLU"),
        ("Linear",),
    ]
    resnet = build_model({"block": "resnet", "widths": [4, 8], "blocks_per_stage": 2}, (1, 8, 8), 3)
    kinds = [b.kinds for b in blocks(resnet)]
    assert kinds[0] == ("Conv2d", "BatchNorm2d", "ReLU") and kinds[-1] == ("Linear",)
    assert kinds[1:-1] == [("BasicBlock",)] * 3 + [("BasicBlock", "GlobalAvgPool2d")]
    assert [b.layers for b in blocks(nn.Linear(3, 2))] == [("",)]
    text = describe_blocks(deep())
    assert text.splitlines()[-1] == "block 3 (layers 9: Linear): 27 parameters, head"


# ---------------------------------------------------------------------------- loading
def test_loading_with_a_new_head_reports_the_skipped_keys() -> None:
    source = deep(classes=3)
    target = deep(classes=5)
    head_before = state(target)["9.weight"]
    report = load_pretrained(target, state(source))
    assert report.skipped_head == ["9.weight", "9.bias"]
    assert not report.missing and not report.mismatched and not report.unexpected
    assert "2.running_mean" in report.loaded and "5.num_batches_tracked" in report.loaded
    for key in report.loaded:
        np.testing.assert_array_equal(state(target)[key], state(source)[key], err_msg=key)
    np.testing.assert_array_equal(state(target)["9.weight"], head_before)
    assert "skipped (the head, newly initialised): 9.weight, 9.bias" in report.format()


def test_a_head_of_the_same_shape_is_skipped_unless_asked() -> None:
    source, target = deep(), deep()
    assert load_pretrained(target, state(source)).skipped_head == ["9.weight", "9.bias"]
    assert not np.array_equal(state(target)["9.weight"], state(source)["9.weight"])
    report = load_pretrained(target, state(source), skip_head=False)
    assert "9.weight" in report.loaded
    np.testing.assert_array_equal(state(target)["9.weight"], state(source)["9.weight"])


def test_shape_mismatches_below_the_head_are_named() -> None:
    source, target = deep(width=10), deep(width=12)
    with pytest.raises(
        ValueError, match=r"'4.weight' has shape \(12, 16\) in the model, \(10, 16\) in the source"
    ):
        load_pretrained(target, state(source))
    report = load_pretrained(target, {k: v for k, v in state(source).items() if k != "1.bias"}, strict=False)
    assert ("4.weight", (12, 16), (10, 16)) in report.mismatched
    assert report.missing == ["1.bias"]
    assert "shape mismatch: 4.weight" in report.format()
    with pytest.raises(ValueError, match="none of the 2 entries"):
        load_pretrained(target, {"fc.weight": np.zeros(3), "fc.bias": np.zeros(3)}, strict=False)


def test_sources_run_directory_and_weights_files(tmp_path: Path) -> None:
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    from gradcraft.io.checkpoint import save_checkpoint

    gradcraft.manual_seed(1)
    trained = deep()
    trainer = trainer_for(
        trained, optim.SGD(trained.parameters(), lr=0.1), [ModelCheckpoint(tmp_path / "run" / "checkpoints")]
    )
    trainer.fit(1)
    expected = state(trained)
    save_checkpoint(tmp_path / "weights", expected)
    safetensors_numpy.save_file(
        {k: np.ascontiguousarray(v).reshape(v.shape) for k, v in expected.items()}, tmp_path / "w.safetensors"
    )
    np.savez(tmp_path / "w.npz", **expected)
    for source in (
        tmp_path / "run",
        tmp_path / "weights.json",
        tmp_path / "w.safetensors",
        tmp_path / "w.npz",
    ):
        target = deep()
        report = load_pretrained(target, source)
        assert len(report.loaded) == len(expected) - 2, source
        np.testing.assert_array_equal(state(target)["4.weight"], expected["4.weight"])
    with pytest.raises(FileNotFoundError, match="no such run directory or weights file"):
        load_pretrained(deep(), tmp_path / "nowhere")


def test_replace_head_gives_a_new_output_layer() -> None:
    model = deep(classes=3)
    body = [id(p) for p in list(model.parameters())[:-2]]
    assert replace_head(model, 7) == "9"
    assert [id(p) for p in list(model.parameters())[:-2]] == body
    assert model(Tensor(np.zeros((2, 1, 6, 6), np.float32))).shape == (2, 7)
    assert list(dict(model.named_children())) == [str(i) for i in range(10)]
    with pytest.raises(ValueError, match="Expected a model with a Linear output layer"):
        replace_head(nn.Sequential(nn.ReLU(), nn.Conv2d(1, 2, 3)), 3)
    with pytest.raises(ValueError, match="positive integer num_classes"):
        replace_head(model, 0)


# ---------------------------------------------------------------------------- freezing
def test_frozen_parameters_do_not_change_while_the_others_do() -> None:
    model = deep()
    frozen = freeze(model, up_to=2)
    assert (
        frozen
        == frozen_parameters(model)
        == ["1.weight", "1.bias", "2.weight", "2.bias", "4.weight", "4.bias", "5.weight", "5.bias"]
    )
    before = state(model)
    opt = optim.Adam(param_groups(model, 0.01), lr=0.01, weight_decay=0.01)
    trainer_for(model, opt).fit(2)
    after = state(model)
    for key in frozen + ["2.running_mean", "2.running_var", "5.running_var", "5.num_batches_tracked"]:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    for key in ("7.weight", "7.bias", "9.weight", "9.bias"):
        assert not np.array_equal(after[key], before[key]), key
    assert all(p.grad is None for n, p in model.named_parameters() if n in frozen)


def test_batch_norm_in_frozen_blocks_stays_in_eval_mode() -> None:
    model = deep()
    freeze(model, ["1", "2"])
    model.train()
    model(Tensor(np.random.default_rng(0).random((8, 1, 6, 6)).astype(np.float32)))
    assert model.training and not model[2].training and model[5].training
    before = state(model)
    trainer_for(model, optim.SGD(param_groups(model, 0.1), lr=0.1)).fit(1)
    np.testing.assert_array_equal(state(model)["2.running_mean"], before["2.running_mean"])
    assert not np.array_equal(state(model)["5.running_mean"], before["5.running_mean"])
    unfreeze(model)
    assert model[2].training and not frozen_parameters(model)
    # without bn_eval the statistics of a frozen block drift with the new data
    drifting = deep()
    freeze(drifting, up_to=1, bn_eval=False)
    start = state(drifting)["2.running_mean"]
    trainer_for(drifting, optim.SGD(param_groups(drifting, 0.1), lr=0.1)).fit(1)
    assert not np.array_equal(state(drifting)["2.running_mean"], start)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "Expected exactly one of prefixes or up_to"),
        ({"prefixes": ["1"], "up_to": 1}, "Expected exactly one of prefixes or up_to"),
        ({"prefixes": ["12"]}, "Received: '12', which matches none"),
        ({"up_to": 5}, r"Expected 0 <= up_to <= 4 \(the model has 4 blocks\)"),
    ],
)
def test_freeze_explains_bad_selections(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        freeze(deep(), **kwargs)


# ---------------------------------------------------------------------------- learning rates
def test_pretrained_blocks_learn_at_a_lower_rate() -> None:
    model = deep()
    groups = param_groups(model, 0.1, backbone_lr_mult=0.1, layer_decay=0.5)
    opt = optim.SGD(groups, lr=0.1)
    assert [g["block"] for g in opt.param_groups] == [3, 2, 1, 0]
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 0.01, 0.005, 0.0025])
    assert opt.param_groups[1]["param_names"] == ["7.weight", "7.bias"]
    before = {n: p.data.copy() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = np.ones_like(p.data)
    opt.step()
    after = {n: p.data for n, p in model.named_parameters()}
    np.testing.assert_allclose(before["9.weight"] - after["9.weight"], 0.1, rtol=1e-5)
    np.testing.assert_allclose(before["4.weight"] - after["4.weight"], 0.005, rtol=1e-4)
    np.testing.assert_allclose(before["1.bias"] - after["1.bias"], 0.0025, rtol=1e-4)
    sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.005, 0.0025, 0.00125])
    fresh = param_groups(
        deep(), 0.1, backbone_lr_mult=0.1, pretrained={"1.weight", "1.bias", "2.weight", "2.bias"}
    )
    assert [g["lr"] for g in fresh] == pytest.approx([0.1, 0.1, 0.1, 0.01])
    with pytest.raises(ValueError, match="Expected 0 < layer_decay <= 1"):
        param_groups(model, 0.1, layer_decay=1.5)


# ---------------------------------------------------------------------------- gradual unfreezing
class Changes(Callback):
    """Which parameters each epoch changed, and which were trainable."""

    order = 0

    def __init__(self) -> None:
        self.changed: list[set[str]] = []
        self.trainable: list[set[str]] = []
        self._start: dict[str, np.ndarray] = {}

    def on_epoch_begin(self, trainer: Trainer) -> None:
        self._start = {n: p.data.copy() for n, p in trainer.model.named_parameters()}
        self.trainable.append(
            {n.split(".")[0] for n, p in trainer.model.named_parameters() if p.requires_grad}
        )

    def on_epoch_end(self, trainer: Trainer) -> None:
        self.changed.append(
            {
                n.split(".")[0]
                for n, p in trainer.model.named_parameters()
                if not np.array_equal(p.data, self._start[n])
            }
        )


def frozen_setup(seed: int = 0, every: int = 1) -> tuple[nn.Module, GradualUnfreezing]:
    gradcraft.manual_seed(seed)
    model = deep()
    bl = blocks(model)
    freeze(model, up_to=3)
    return model, GradualUnfreezing(bl[:3], every_epochs=every)


def test_gradual_unfreezing_follows_its_schedule_and_the_optimizer_trains_the_blocks() -> None:
    model, unfreezing = frozen_setup()
    assert [(e, b.index) for e, b in unfreezing.schedule()] == [(1, 2), (2, 1), (3, 0)]
    watch = Changes()
    opt = optim.Adam(param_groups(model, 0.01, backbone_lr_mult=0.5), lr=0.01)
    trainer_for(model, opt, [unfreezing, watch]).fit(4)
    head, b2, b1, b0 = {"9"}, {"7"}, {"4", "5"}, {"1", "2"}
    assert watch.trainable == [head, head | b2, head | b2 | b1, head | b2 | b1 | b0]
    assert watch.changed == watch.trainable
    assert unfreezing.unfrozen == 3 and not frozen_parameters(model)
    assert model[2].training  # its batch norm follows the model again


def test_gradual_unfreezing_every_two_epochs() -> None:
    model, unfreezing = frozen_setup(every=2)
    watch = Changes()
    trainer_for(model, optim.SGD(param_groups(model, 0.05), lr=0.05), [unfreezing, watch]).fit(5)
    assert [len(t) for t in watch.trainable] == [1, 1, 2, 2, 4]  # blocks: head, +7 at 2, +4/5 at 4


def test_gradual_unfreezing_needs_the_blocks_in_the_optimizer() -> None:
    model, unfreezing = frozen_setup()
    trainable = [p for p in model.parameters() if p.requires_grad]
    with pytest.raises(ValueError, match="Expected the optimizer to hold the frozen blocks' parameters"):
        trainer_for(model, optim.SGD(trainable, lr=0.1), [unfreezing]).fit(1)
    with pytest.raises(ValueError, match="every_epochs >= 1"):
        GradualUnfreezing([], 0)


def test_gradual_unfreezing_resumes_exactly(tmp_path: Path) -> None:
    class Boom(Exception):
        pass

    def run(callbacks: list[Any], resume: Path | None = None) -> nn.Module:
        model, unfreezing = frozen_setup(seed=4)
        opt = optim.Adam(param_groups(model, 0.01), lr=0.01)
        trainer = trainer_for(model, opt, [unfreezing, *callbacks])
        trainer.fit(4, resume_from=resume)
        return model

    reference = state(run([ModelCheckpoint(tmp_path / "ref", every_steps=4)]))

    def crash(t: Trainer) -> None:
        if t.global_step == 15:
            raise Boom

    with pytest.raises(Boom):
        run(
            [ModelCheckpoint(tmp_path / "run", every_steps=4), LambdaCallback(on_batch_end=crash, order=1000)]
        )
    gradcraft.manual_seed(77)
    resumed = state(
        run([ModelCheckpoint(tmp_path / "run", every_steps=4)], resume=tmp_path / "run" / "last.json")
    )
    for key, value in reference.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)


# ---------------------------------------------------------------------------- strategies
def test_auto_strategy_follows_the_lecture_table() -> None:
    assert STRATEGY_TABLE == {
        ("small", "similar"): "linear_probe",
        ("small", "different"): "finetune_top",
        ("large", "similar"): "finetune_top",
        ("large", "different"): "finetune_all",
    }
    for (size, similarity), expected in STRATEGY_TABLE.items():
        assert choose_strategy("auto", size, similarity)[0] == expected
    assert choose_strategy("auto", "auto", "similar", examples_per_class=60)[0] == "linear_probe"
    assert choose_strategy("auto", "auto", "different", examples_per_class=5400)[0] == "finetune_all"
    strategy, reason = choose_strategy("auto", "auto", "similar", examples_per_class=999)
    assert strategy == "linear_probe" and "999 training examples per class" in reason
    assert choose_strategy("finetune_all", "small", "similar")[0] == "finetune_all"
    with pytest.raises(ValueError, match="Expected examples_per_class"):
        choose_strategy("auto", "auto", "similar")
    with pytest.raises(ValueError, match="Expected strategy 'auto' or one of"):
        choose_strategy("fine_tune")


def test_strategies_freeze_the_right_number_of_blocks() -> None:
    assert frozen_block_count("linear_probe", 4) == 3
    assert frozen_block_count("finetune_top", 4, top_blocks=1) == 2
    assert frozen_block_count("finetune_top", 4, top_blocks=5) == 0
    assert frozen_block_count("finetune_all", 4) == 0
