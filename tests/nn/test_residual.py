import numpy as np
import pytest

import gradcraft as gc
from gradcraft.nn.module import LayerError
from gradcraft.nn.residual import BasicBlock

TORCHVISION_KEYS = [
    "conv1.weight",
    "bn1.weight",
    "bn1.bias",
    "bn1.running_mean",
    "bn1.running_var",
    "bn1.num_batches_tracked",
    "conv2.weight",
    "bn2.weight",
    "bn2.bias",
    "bn2.running_mean",
    "bn2.running_var",
    "bn2.num_batches_tracked",
]
DOWNSAMPLE_KEYS = [
    "downsample.0.weight",
    "downsample.1.weight",
    "downsample.1.bias",
    "downsample.1.running_mean",
    "downsample.1.running_var",
    "downsample.1.num_batches_tracked",
]


def _nonnegative_input(shape, seed=0):
    # a block's input is the output of the previous block's ReLU
    return np.maximum(np.random.default_rng(seed).standard_normal(shape), 0).astype(np.float32)


@pytest.mark.parametrize(
    ("in_ch", "out_ch", "stride", "keys"),
    [(8, 8, 1, TORCHVISION_KEYS), (8, 16, 1, TORCHVISION_KEYS + DOWNSAMPLE_KEYS), (8, 8, 2, TORCHVISION_KEYS + DOWNSAMPLE_KEYS)],
)
def test_basic_block_has_torchvision_parameter_names_and_projection_only_when_shape_changes(in_ch, out_ch, stride, keys):
    block = BasicBlock(in_ch, out_ch, stride)
    assert list(block.state_dict()) == keys
    assert (block.downsample is None) == (len(keys) == len(TORCHVISION_KEYS))
    y = block(gc.randn(2, in_ch, 8, 8))
    assert y.shape == (2, out_ch, 8 // stride, 8 // stride)
    assert block.conv1.bias is None and block.conv2.bias is None


def test_zero_init_residual_block_starts_as_identity_and_keeps_the_variance():
    block = BasicBlock(16, 16, zero_init_residual=True).train()
    assert np.all(block.bn2.weight.numpy() == 0)
    x = gc.tensor(_nonnegative_input((8, 16, 10, 10)))
    branch = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
    assert np.all(branch.numpy() == 0)  # F(x) = 0
    total = (x + branch).numpy()
    np.testing.assert_allclose(total.var(), x.numpy().var(), rtol=1e-6)  # Var(x + F(x)) = Var(x)
    np.testing.assert_array_equal(block(x).numpy(), x.numpy())  # ReLU(x + 0) = x for x ≥ 0


def test_without_zero_init_the_residual_branch_adds_variance():
    block = BasicBlock(16, 16).train()
    x = gc.tensor(_nonnegative_input((8, 16, 10, 10)))
    branch = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
    assert (x + branch).numpy().var() > 1.5 * x.numpy().var()


def test_zero_init_residual_stack_keeps_the_signal_scale_at_depth():
    x = gc.tensor(_nonnegative_input((4, 8, 8, 8)))
    with gc.no_grad():
        h = x
        for _ in range(10):
            h = BasicBlock(8, 8, zero_init_residual=True)(h)
    np.testing.assert_allclose(h.numpy(), x.numpy())


def test_zero_init_residual_block_still_learns_the_residual():
    block = BasicBlock(4, 4, zero_init_residual=True)
    x = gc.tensor(_nonnegative_input((2, 4, 6, 6)), requires_grad=True)
    block(x).sum().backward()
    assert np.abs(block.bn2.weight.grad).sum() > 0  # γ gets a gradient, so F can grow
    assert block.conv1.weight.grad is not None


def test_basic_block_matches_a_torch_basic_block():
    torch = pytest.importorskip("torch", reason="parity tests need PyTorch (pip install torch==2.13.0)")
    nn = torch.nn
    with gc.backend.default_dtype_as(np.float64):
        ours = BasicBlock(4, 6, stride=2)
    conv1, bn1 = nn.Conv2d(4, 6, 3, 2, 1, bias=False), nn.BatchNorm2d(6)
    conv2, bn2 = nn.Conv2d(6, 6, 3, 1, 1, bias=False), nn.BatchNorm2d(6)
    down = nn.Sequential(nn.Conv2d(4, 6, 1, 2, bias=False), nn.BatchNorm2d(6))
    theirs = nn.ModuleDict({"conv1": conv1, "bn1": bn1, "conv2": conv2, "bn2": bn2, "downsample": down}).double()
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            p.copy_(torch.tensor(np.random.default_rng(len(name)).uniform(0.5, 1.5, p.shape)))
            ours.get_parameter(name).data[...] = p.numpy()

    def torch_block(x):
        out = torch.relu(bn1(conv1(x)))
        return torch.relu(bn2(conv2(out)) + down(x))

    x = np.random.default_rng(0).standard_normal((3, 4, 7, 7))
    xt, tt = gc.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ref = ours(xt), torch_block(tt)
    np.testing.assert_allclose(y.numpy(), ref.detach().numpy(), atol=1e-10)
    g = np.random.default_rng(1).standard_normal(ref.shape)
    y.backward(g)
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(xt.grad, tt.grad.numpy(), atol=1e-9)
    for name, p in theirs.named_parameters():
        np.testing.assert_allclose(ours.get_parameter(name).grad, p.grad.numpy(), atol=1e-9, err_msg=name)
    np.testing.assert_allclose(ours.bn1.running_mean.numpy(), bn1.running_mean.numpy(), atol=1e-12)


def test_stochastic_depth_drops_the_branch_per_sample_in_training_only():
    p = 0.5
    block = BasicBlock(4, 4, stochastic_depth=p, generator=np.random.default_rng(0))
    x = gc.tensor(_nonnegative_input((64, 4, 5, 5)))
    block.eval()
    full = block(x).numpy()
    # in eval mode the batch-norm layers use running statistics, so the branch is the same
    # function of each sample in both passes below
    block.drop_path.train()
    y = block(x).numpy()
    with gc.no_grad():
        branch = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x))))).numpy()
    identity = x.numpy()
    dropped = np.all(np.isclose(y, np.maximum(identity, 0)), axis=(1, 2, 3))
    kept = np.all(np.isclose(y, np.maximum(branch / (1 - p) + identity, 0), atol=1e-5), axis=(1, 2, 3))
    assert np.all(dropped | kept)
    assert 0.3 < dropped.mean() < 0.7  # about p of the samples lose their branch
    np.testing.assert_allclose(full, np.maximum(branch + identity, 0), atol=1e-5)


def test_stochastic_depth_is_reproducible_from_the_generator():
    outs = []
    for _ in range(2):
        gc.manual_seed(3)
        block = BasicBlock(3, 3, stochastic_depth=0.3, generator=np.random.default_rng(7))
        outs.append(block(gc.tensor(_nonnegative_input((16, 3, 4, 4)))).numpy())
    np.testing.assert_array_equal(*outs)


def test_basic_block_input_error_names_the_block_and_expected_channels():
    with pytest.raises(LayerError, match=r"BasicBlock\(8, 16.*Expected input of shape \(N, 8, H, W\).*\(2, 4, 6, 6\)"):
        BasicBlock(8, 16)(gc.randn(2, 4, 6, 6))


def test_basic_block_rejects_bad_stochastic_depth():
    with pytest.raises(ValueError, match=r"Received: stochastic_depth=1.0"):
        BasicBlock(4, 4, stochastic_depth=1.0)
