import numpy as np

import gradcraft
from gradcraft import nn
from gradcraft.diagnostics.stats import (
    ActivationRecorder,
    activation_kind,
    parameter_stats,
    snapshot_weights,
    summarize_activation,
    update_ratios,
)


def test_activation_kind_by_class_name():
    assert activation_kind(nn.ReLU()) == "relu"
    assert activation_kind(nn.Tanh()) == "tanh"
    assert activation_kind(nn.Sigmoid()) == "sigmoid"
    assert activation_kind(nn.LeakyReLU()) == "leaky_relu"
    assert activation_kind(nn.Linear(2, 2)) is None

    class ReLU(nn.Module):  # a user's own module with the same name
        def forward(self, x):
            return x.relu()

    assert activation_kind(ReLU()) == "relu"


def test_tanh_and_sigmoid_saturation_fractions():
    y = np.array([[-1.0, -0.995, 0.0, 0.5, 0.999]], dtype=np.float32)
    assert summarize_activation("t", "tanh", y).saturated == 0.6
    s = np.array([[0.005, 0.5, 0.995, 0.3]], dtype=np.float32)
    assert summarize_activation("s", "sigmoid", s).saturated == 0.5


def test_dead_units_are_features_of_2d_and_channels_of_4d_outputs():
    y = np.zeros((8, 4), np.float32)
    y[3, 0] = 1.0  # unit 0 fires once: alive; units 1-3 never fire
    assert summarize_activation("r", "relu", y).dead == 0.75
    z = np.zeros((2, 3, 4, 4), np.float32)
    z[1, 2, 3, 3] = 0.5  # channel 2 fires at one position
    assert np.isclose(summarize_activation("r", "relu", z).dead, 2 / 3)


def test_recorder_summarizes_each_activation_layer_and_removes_its_hooks():
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3), nn.Tanh())
    x = gradcraft.randn(16, 5)
    with ActivationRecorder(model) as rec:
        model(x)
    names = [s.name for s in rec.stats()]
    assert names == ["1", "3"]
    assert rec.stats()[0].shape == (16, 7) and rec.stats()[1].saturated is not None
    model(x)  # hooks are gone: nothing more is recorded
    assert len(rec.stats()) == 2
    assert all(not m._forward_hooks for m in model.modules())


def test_recorder_falls_back_to_parameterized_layers_without_activation_modules():
    model = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 2))
    with ActivationRecorder(model) as rec:
        model(gradcraft.randn(3, 5))
    assert [s.kind for s in rec.stats()] == [None, None]


def test_update_ratio_is_step_norm_over_weight_norm():
    model = nn.Sequential(nn.Linear(3, 2))
    before = snapshot_weights(model)
    w = model[0].weight
    w.data[...] = w.data * 1.01
    r = update_ratios(model, before)
    assert set(r) == {"0.weight"}
    assert np.isclose(r["0.weight"], 0.01, rtol=1e-3)


def test_parameter_stats_reports_gradient_norms_after_backward():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    loss = model(gradcraft.randn(5, 3)).sum()
    loss.backward()
    stats = parameter_stats(model)
    assert [p.name for p in stats] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert stats[0].is_weight and not stats[1].is_weight
    assert stats[2].grad_norm > 0 and stats[2].finite
