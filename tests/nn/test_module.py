"""Module: registration, traversal, modes, hooks, state dicts and layer-naming errors."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import gradcraft as gc
from gradcraft import nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 5))
        self.head = nn.Linear(5, 3)
        self.register_buffer("step", np.array(0, dtype=np.int64))
        self.register_buffer("scratch", np.zeros(2), persistent=False)

    def forward(self, x):
        return self.head(self.features(x).relu())


EXPECTED_KEYS = [
    "step",
    "features.0.weight",
    "features.0.bias",
    "features.1.weight",
    "features.1.bias",
    "features.1.running_mean",
    "features.1.running_var",
    "features.1.num_batches_tracked",
    "features.3.weight",
    "features.3.bias",
    "head.weight",
    "head.bias",
]


def test_parameter_is_a_float_tensor_requiring_grad():
    p = nn.Parameter([1, 2, 3])
    assert isinstance(p, gc.Tensor) and p.requires_grad and p.dtype == np.float32
    assert nn.Parameter(np.zeros(2, dtype=np.float64)).dtype == np.float64
    assert not nn.Parameter(np.zeros(2), requires_grad=False).requires_grad
    assert "Parameter containing" in repr(p)


def test_state_dict_uses_pytorch_dotted_names_with_buffers():
    net = Net()
    sd = net.state_dict()
    assert list(sd) == EXPECTED_KEYS
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    assert sd["features.1.num_batches_tracked"].dtype == np.int64
    assert "scratch" not in sd


def test_state_dict_names_match_the_same_torch_model():
    torch = pytest.importorskip("torch", reason="compares names with PyTorch")
    tnet = torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 5)
    )
    ours = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 5))
    assert list(ours.state_dict()) == list(tnet.state_dict())
    ours.load_state_dict(tnet.state_dict())
    np.testing.assert_array_equal(ours[0].weight.numpy(), tnet[0].weight.detach().numpy())


def test_state_dict_is_a_snapshot_and_round_trips():
    a, b = Net(), Net()
    sd = a.state_dict()
    a.head.weight.data += 1.0
    assert not np.allclose(sd["head.weight"], a.head.weight.numpy())
    b.load_state_dict(sd)
    for key, value in b.state_dict().items():
        np.testing.assert_array_equal(value, sd[key])


def test_load_state_dict_copies_in_place_keeping_parameter_identity():
    net = Net()
    weight = net.head.weight
    array = weight.data
    net.load_state_dict({k: np.full_like(v, 2) for k, v in net.state_dict().items()})
    assert net.head.weight is weight and net.head.weight.data is array
    np.testing.assert_array_equal(array, 2)


def test_load_state_dict_names_missing_unexpected_and_wrong_shaped_keys():
    net = Net()
    sd = net.state_dict()
    del sd["head.bias"]
    sd["head.extra"] = np.zeros(3)
    sd["features.0.weight"] = np.zeros((6, 8))
    before = net.features[0].weight.numpy().copy()
    with pytest.raises(nn.StateDictError) as info:
        net.load_state_dict(sd)
    msg = str(info.value)
    assert "Missing key(s) in state_dict: 'head.bias'" in msg
    assert "Unexpected key(s) in state_dict: 'head.extra'" in msg
    assert "size mismatch for 'features.0.weight': Expected shape (8, 6)" in msg
    assert "Received: shape=(6, 8)" in msg
    np.testing.assert_array_equal(net.features[0].weight.numpy(), before)  # nothing copied


def test_load_state_dict_non_strict_reports_but_still_rejects_shapes():
    net = Net()
    sd = net.state_dict()
    del sd["head.bias"]
    sd["other"] = np.zeros(1)
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["head.bias"] and result.unexpected_keys == ["other"]
    sd["head.weight"] = np.zeros((2, 2))
    with pytest.raises(nn.StateDictError, match=r"size mismatch for 'head\.weight'"):
        net.load_state_dict(sd, strict=False)


def test_parameters_and_buffers_are_traversed_once_even_when_shared():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(model.parameters())) == 2
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias"]
    assert model.num_parameters() == 12
    net = Net()
    assert [n for n, _ in net.named_buffers()] == [
        "step",
        "scratch",
        "features.1.running_mean",
        "features.1.running_var",
        "features.1.num_batches_tracked",
    ]


def test_named_modules_children_and_get_submodule():
    net = Net()
    names = [n for n, _ in net.named_modules()]
    assert names == ["", "features", "features.0", "features.1", "features.2", "features.3", "head"]
    assert [n for n, _ in net.named_children()] == ["features", "head"]
    assert net.get_submodule("features.1") is net.features[1]
    assert net.get_parameter("features.3.bias") is net.features[3].bias
    with pytest.raises(AttributeError, match="Expected a submodule named '7'"):
        net.get_submodule("features.7")


def test_train_and_eval_propagate_to_every_submodule():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_zero_grad_sets_gradients_to_none():
    net = Net()
    net(gc.randn(4, 6)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(np.all(p.grad == 0) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_requires_grad_freezes_parameters():
    net = Net()
    net.features.requires_grad_(False)
    assert net.num_parameters(trainable_only=True) == 5 * 3 + 3
    net(gc.randn(4, 6)).sum().backward()
    assert net.features[0].weight.grad is None and net.head.weight.grad is not None


def test_apply_visits_children_before_parent():
    seen = []
    Net().apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "BatchNorm1d", "ReLU", "Linear", "Sequential", "Linear", "Net"]


def test_forward_hook_sees_outputs_and_can_be_removed():
    net = Net()
    shapes = []
    handle = net.features[2].register_forward_hook(lambda m, inp, out: shapes.append(out.shape))
    net(gc.randn(4, 6))
    handle.remove()
    net(gc.randn(4, 6))
    assert shapes == [(4, 8)]


def test_forward_hook_can_replace_output_and_pre_hook_inputs():
    lin = nn.Linear(2, 2)
    with lin.register_forward_hook(lambda m, inp, out: out * 0):
        assert np.all(lin(gc.randn(3, 2)).numpy() == 0)
    assert np.any(lin(gc.ones(3, 2)).numpy() != 0)
    lin.register_forward_pre_hook(lambda m, inp: (inp[0] * 0,))
    np.testing.assert_allclose(lin(gc.ones(3, 2)).numpy(), np.broadcast_to(lin.bias.numpy(), (3, 2)))


def test_shape_error_names_the_layer_path_and_its_repr():
    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.Linear(128, 10))

        def forward(self, x):
            return self.features(x)

    with pytest.raises(ValueError) as info:
        Classifier()(gc.randn(32, 20))
    assert str(info.value) == (
        "in layer 'features.3' (Linear(in_features=128, out_features=10, bias=True)): "
        "Expected input with last dimension 128. Received: shape=(32, 64)"
    )
    assert isinstance(info.value, nn.LayerError) and info.value.path == "features.3"


def test_shape_error_in_a_directly_called_layer_names_the_layer():
    with pytest.raises(
        ValueError, match=r"^in Linear\(in_features=3, out_features=2, bias=True\): Expected input"
    ):
        nn.Linear(3, 2)(gc.randn(4, 5))


def test_repr_is_nested_and_readable():
    text = repr(Net())
    assert text.startswith(
        "Net(\n  (features): Sequential(\n    (0): Linear(in_features=6, out_features=8, bias=True)"
    )
    assert "(head): Linear(in_features=5, out_features=3, bias=True)\n)" in text


def test_assigning_before_init_raises_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter([1.0])

    with pytest.raises(AttributeError, match=r"before Module\.__init__"):
        Bad()


def test_reassigning_and_deleting_members():
    net = Net()
    net.head = nn.Identity()
    assert "head.weight" not in net.state_dict()
    del net.head
    assert "head" not in dict(net.named_children())
    with pytest.raises(TypeError, match="Expected a Parameter or None for registered parameter 'weight'"):
        net.features[0].weight = np.zeros((8, 6))
    net.features[0].bias = None
    assert "features.0.bias" not in net.state_dict()


def test_deepcopy_and_pickle_give_independent_equal_models():
    net = Net()
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert clone.head.weight is not net.head.weight
        assert isinstance(clone.head.weight, nn.Parameter)
        for key, value in clone.state_dict().items():
            np.testing.assert_array_equal(value, net.state_dict()[key])


def test_to_double_casts_floating_parameters_and_buffers_in_place():
    net = Net()
    weight = net.head.weight
    net.double()
    assert net.head.weight is weight and weight.dtype == np.float64
    assert net.features[1].running_mean.dtype == np.float64
    assert net.features[1].num_batches_tracked.dtype == np.int64
    assert net(gc.randn(3, 6, dtype=np.float64)).dtype == np.float64
