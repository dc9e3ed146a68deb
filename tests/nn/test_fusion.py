"""Sequential runs a Linear and the ReLU after it as one LinearReLU node, with the results of
the two layers run one by one, and leaves every pair that something could observe alone."""

from __future__ import annotations

import numpy as np
import pytest

import gradcraft as gc
from gradcraft import nn
from gradcraft.nn.fusion import fusion_enabled, use_fusion


def graph_nodes(out):
    """Names of the Functions in ``out``'s graph."""
    seen, stack, names = set(), [out.grad_fn], []
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen or not hasattr(fn, "parents"):
            continue
        seen.add(id(fn))
        names.append(type(fn).__name__)
        stack.extend(p for p in fn.parents if p is not None and not isinstance(p, gc.Tensor))
    return sorted(names)


def mlp():
    gc.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3), nn.ReLU()
    )


def run(model, x, y):
    for p in model.parameters():
        p.grad = None
    out = model(x)
    nodes = graph_nodes(out)
    nn.CrossEntropyLoss()(out, y).backward()
    return out, nodes, [p.grad.copy() for p in model.parameters()]


def test_linear_relu_pairs_run_as_one_node_with_identical_results():
    model = mlp()
    rng = np.random.default_rng(0)
    x = gc.tensor(rng.standard_normal((10, 3, 4)).astype(np.float32))
    y = gc.tensor(rng.integers(0, 3, 10))
    fused_out, nodes, fused_grads = run(model, x, y)
    assert nodes == ["LinearReLU"] * 3
    with use_fusion(False):
        assert not fusion_enabled()
        out, nodes, grads = run(model, x, y)
        assert nodes == ["Linear", "Linear", "Linear", "ReLU", "ReLU", "ReLU"]
    assert fusion_enabled()
    np.testing.assert_array_equal(fused_out.numpy(), out.numpy())
    for a, b in zip(fused_grads, grads):
        np.testing.assert_array_equal(a, b)
    model.eval()
    with gc.no_grad():
        np.testing.assert_array_equal(model(x).numpy(), out.numpy())


def test_a_hooked_layer_is_not_fused_and_its_hook_sees_its_own_output():
    model = mlp()
    x = gc.randn(4, 12)
    seen = []
    handle = model[2].register_forward_hook(lambda m, args, out: seen.append((args[0].numpy(), out.numpy())))
    out = model(x)
    assert graph_nodes(out).count("LinearReLU") == 2  # the other pairs still fuse
    (pre, post), = seen
    np.testing.assert_array_equal(post, np.maximum(pre, 0))
    assert (pre < 0).any()
    handle.remove()
    pre_hook = model[1].register_forward_pre_hook(lambda m, args: None)
    assert graph_nodes(model(x)).count("LinearReLU") == 2
    pre_hook.remove()
    assert graph_nodes(model(x)).count("LinearReLU") == 3


def test_subclasses_and_replaced_forwards_are_not_fused():
    class MyReLU(nn.ReLU):
        def forward(self, x):
            return super().forward(x) * 2

    model = nn.Sequential(nn.Linear(4, 4), MyReLU())
    x = gc.randn(3, 4)
    assert graph_nodes(model(x)).count("LinearReLU") == 0
    np.testing.assert_allclose(model(x).numpy(), 2 * np.maximum(model[0](x).numpy(), 0))

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    model[0].forward = lambda x: gc.zeros(3, 4)  # an instance-level forward is honoured
    assert model(x).numpy().sum() == 0


def test_pairs_are_found_only_for_adjacent_linear_then_relu():
    model = nn.Sequential(nn.ReLU(), nn.Linear(4, 4), nn.Dropout(0.0), nn.ReLU(), nn.Linear(4, 4), nn.Linear(4, 4))
    x = gc.randn(3, 4, requires_grad=True)
    assert "LinearReLU" not in graph_nodes(model(x))
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.ReLU())
    assert graph_nodes(model(x)) == ["LinearReLU"]
    np.testing.assert_array_equal(model(x).numpy(), np.maximum(x.numpy() @ model[0].weight.numpy().T, 0))


def test_a_fused_layer_names_itself_in_shape_errors():
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(128, 10), nn.ReLU())
    with pytest.raises(nn.LayerError) as info:
        model(gc.randn(32, 20))
    assert str(info.value) == (
        "in layer '2' (Linear(in_features=128, out_features=10, bias=True)): "
        "Expected input with last dimension 128. Received: shape=(32, 64)"
    )
    outer = nn.Sequential(nn.Flatten(), model)
    with pytest.raises(nn.LayerError, match=r"^in layer '1\.2' \(Linear"):
        outer(gc.randn(32, 20))


def test_use_fusion_restores_the_setting_after_an_error():
    with pytest.raises(RuntimeError), use_fusion(False):
        raise RuntimeError
    assert fusion_enabled()


def conv_net():
    gc.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.BasicBlock(6, 6), nn.Flatten(), nn.Linear(6 * 4 * 4, 8), nn.BatchNorm1d(8), nn.ReLU(),
        nn.Linear(8, 3),
    )


def test_batch_norm_relu_pairs_run_as_one_node_also_inside_residual_blocks():
    model = conv_net()
    rng = np.random.default_rng(2)
    x = gc.tensor(rng.standard_normal((5, 2, 8, 8)).astype(np.float32))
    y = gc.tensor(rng.integers(0, 3, 5))
    fused_out, nodes, fused_grads = run(model, x, y)
    assert nodes.count("BatchNormReLU") == 3 and "ReLU" not in nodes
    fused_stats = [b.copy() for b in (model[1].running_mean.data, model[4].bn1.running_var.data)]
    model = conv_net()
    with use_fusion(False):
        out, nodes, grads = run(model, x, y)
    assert nodes.count("BatchNormReLU") == 0 and nodes.count("ReLU") == 3
    np.testing.assert_array_equal(fused_out.numpy(), out.numpy())
    for a, b in zip(fused_grads, grads):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(fused_stats, (model[1].running_mean.data, model[4].bn1.running_var.data)):
        np.testing.assert_array_equal(a, b)
    model.eval()
    with gc.no_grad():
        evaluated = model(x).numpy()
        with use_fusion(False):
            np.testing.assert_array_equal(evaluated, model(x).numpy())


def test_a_hooked_batch_norm_in_a_residual_block_is_not_fused():
    model = conv_net()
    seen = []
    model[4].bn1.register_forward_hook(lambda m, args, out: seen.append(out.numpy()))
    out = model(gc.randn(2, 2, 8, 8))
    assert graph_nodes(out).count("BatchNormReLU") == 2
    assert len(seen) == 1 and (seen[0] < 0).any()  # the hook sees batch norm's output, before the ReLU


def test_a_fused_batch_norm_names_itself_in_shape_errors():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(5), nn.ReLU())
    with pytest.raises(nn.LayerError, match=r"^in layer '1' \(BatchNorm2d\(5,.*Expected input with 5 channels"):
        model(gc.randn(2, 2, 6, 6))
    block = nn.Sequential(nn.BasicBlock(3, 3))
    block[0].bn1 = nn.BatchNorm2d(4)
    with pytest.raises(nn.LayerError, match=r"^in layer '0\.bn1' \(BatchNorm2d\(4,"):
        block(gc.randn(2, 3, 6, 6))
