"""PyTorch-format state dicts: the shipped architectures move to PyTorch and back unchanged."""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
from safetensors.torch import load_file as torch_load_file  # noqa: E402
from safetensors.torch import save_file as torch_save_file  # noqa: E402

import gradcraft  # noqa: E402
from gradcraft import nn  # noqa: E402
from gradcraft.io import (  # noqa: E402
    load_torch_state_dict,
    load_torch_weights,
    save_checkpoint,
    save_torch_state_dict,
)
from gradcraft.models import build_model  # noqa: E402
from gradcraft.nn.module import StateDictError  # noqa: E402

tnn = torch.nn


# ---------------------------------------------------------------------------- equivalent models
class TorchBasicBlock(tnn.Module):
    """torchvision's BasicBlock (conv1, bn1, relu, conv2, bn2, downsample.0/1), without torchvision."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(cout)
        self.relu = tnn.ReLU()
        self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = tnn.Sequential(
                tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout)
            )

    def forward(self, x: Any) -> Any:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class TorchGlobalAvgPool(tnn.Module):
    def forward(self, x: Any) -> Any:
        return x.mean(dim=(2, 3))


def mlp_pair() -> tuple[nn.Module, Any]:
    """The ``mlp`` block with batch norm and dropout (as fashion_mlp), on 1×6×6 inputs."""
    ours = build_model({"block": "mlp", "widths": [16, 8], "norm": "batchnorm", "dropout": 0.3}, (1, 6, 6), 3)
    theirs = tnn.Sequential(
        tnn.Flatten(),
        tnn.Linear(36, 16, bias=False), tnn.BatchNorm1d(16), tnn.ReLU(), tnn.Dropout(0.3),
        tnn.Linear(16, 8, bias=False), tnn.BatchNorm1d(8), tnn.ReLU(), tnn.Dropout(0.3),
        tnn.Linear(8, 3),
    )  # fmt: skip
    return ours, theirs


def cnn_pair() -> tuple[nn.Module, Any]:
    """The ``cnn`` block with batch norm (as fashion_quick / fashion_cnn), on 1×8×8 inputs."""
    cfg = {"block": "cnn", "widths": [4, 8], "convs_per_stage": 2, "hidden": [10], "norm": "batchnorm"}
    ours = build_model(cfg, (1, 8, 8), 3)
    layers: list[Any] = []
    cin = 1
    for width in (4, 8):
        for _ in range(2):
            layers += [tnn.Conv2d(cin, width, 3, padding=1, bias=False), tnn.BatchNorm2d(width), tnn.ReLU()]
            cin = width
        layers.append(tnn.MaxPool2d(2))
    layers += [tnn.Flatten(), tnn.Linear(8 * 2 * 2, 10, bias=False), tnn.BatchNorm1d(10), tnn.ReLU()]
    layers.append(tnn.Linear(10, 3))
    return ours, tnn.Sequential(*layers)


def resnet_pair() -> tuple[nn.Module, Any]:
    """The ``resnet`` block (as fashion_resnet): stem, two stages of basic blocks, GAP, linear."""
    ours = build_model({"block": "resnet", "widths": [4, 8], "blocks_per_stage": 2}, (1, 8, 8), 3)
    theirs = tnn.Sequential(
        tnn.Conv2d(1, 4, 3, padding=1, bias=False), tnn.BatchNorm2d(4), tnn.ReLU(),
        TorchBasicBlock(4, 4), TorchBasicBlock(4, 4), TorchBasicBlock(4, 8, stride=2), TorchBasicBlock(8, 8),
        TorchGlobalAvgPool(), tnn.Linear(8, 3),
    )  # fmt: skip
    return ours, theirs


PAIRS: dict[str, tuple[Callable[[], tuple[nn.Module, Any]], tuple[int, ...]]] = {
    "mlp": (mlp_pair, (1, 6, 6)),
    "cnn": (cnn_pair, (1, 8, 8)),
    "resnet": (resnet_pair, (1, 8, 8)),
}


def randomize_torch(model: Any, seed: int) -> None:
    """Random weights and non-trivial batch-norm statistics (γ, β, μ, σ², step count)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(7)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.5)


def randomize_ours(model: nn.Module, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for name, t in model.state_dict(keep_vars=True).items():
        if name.endswith("num_batches_tracked"):
            t.data[...] = 5
        elif name.endswith("running_var"):
            t.data[...] = rng.random(t.shape) + 0.5
        else:
            t.data[...] = rng.standard_normal(t.shape) * 0.5


def predict_ours(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    with gradcraft.no_grad():
        return model(gradcraft.Tensor(x)).numpy()


def predict_torch(model: Any, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def inputs(shape: tuple[int, ...], n: int = 5) -> np.ndarray:
    return np.random.default_rng(3).standard_normal((n, *shape)).astype(np.float32)


# ---------------------------------------------------------------------------- naming
@pytest.mark.parametrize("arch", sorted(PAIRS))
def test_state_dict_names_shapes_and_order_match_pytorch(arch: str) -> None:
    ours, theirs = PAIRS[arch][0]()
    mine = ours.state_dict()
    torch_sd = theirs.state_dict()
    assert list(mine) == list(torch_sd)
    for key, value in torch_sd.items():
        assert mine[key].shape == tuple(value.shape), key
        assert mine[key].dtype == value.numpy().dtype, key  # float32, and int64 step counts


# ---------------------------------------------------------------------------- PyTorch -> gradcraft
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("arch", sorted(PAIRS))
def test_pytorch_weights_give_the_same_predictions_here(arch: str, suffix: str, tmp_path: Path) -> None:
    make, shape = PAIRS[arch]
    ours, theirs = make()
    randomize_torch(theirs, seed=1)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        torch_save_file(theirs.state_dict(), str(path))
    else:
        torch.save(theirs.state_dict(), path)
    state = load_torch_state_dict(path)
    assert ours.load_state_dict(state) == ([], [])
    x = inputs(shape)
    np.testing.assert_allclose(predict_ours(ours, x), predict_torch(theirs, x), rtol=1e-5, atol=1e-5)
    bn = next(m for m in ours.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)))
    assert int(bn.num_batches_tracked.numpy()) == 7 and bn.num_batches_tracked.dtype == np.int64


# ---------------------------------------------------------------------------- gradcraft -> PyTorch
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("arch", sorted(PAIRS))
def test_our_weights_give_the_same_predictions_in_pytorch(arch: str, suffix: str, tmp_path: Path) -> None:
    make, shape = PAIRS[arch]
    ours, theirs = make()
    randomize_ours(ours, seed=2)
    path = save_torch_state_dict(ours, tmp_path / f"ours{suffix}")
    state = torch_load_file(str(path)) if suffix == ".safetensors" else torch.load(path, weights_only=True)
    theirs.load_state_dict(state, strict=True)
    x = inputs(shape)
    np.testing.assert_allclose(predict_torch(theirs, x), predict_ours(ours, x), rtol=1e-5, atol=1e-5)
    tracked = next(v for k, v in state.items() if k.endswith("num_batches_tracked"))
    assert tracked.dtype == torch.int64 and tracked.shape == () and int(tracked) == 5


def test_round_trip_through_pytorch_restores_every_array(tmp_path: Path) -> None:
    ours, theirs = resnet_pair()
    randomize_ours(ours, seed=4)
    theirs.load_state_dict(torch_load_file(str(save_torch_state_dict(ours, tmp_path / "a.safetensors"))))
    torch_save_file(theirs.state_dict(), str(tmp_path / "b.safetensors"))
    back, _ = resnet_pair()
    back.load_state_dict(load_torch_state_dict(tmp_path / "b.safetensors"))
    for key, value in ours.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[key], value, err_msg=key)


def test_non_contiguous_weights_are_saved_correctly(tmp_path: Path) -> None:
    # safetensors 0.8 writes transposed (non-C-contiguous) arrays wrongly unless made contiguous
    layer = nn.Linear(3, 4)
    w = np.arange(12, dtype=np.float32).reshape(3, 4).T  # a transposed view, F-ordered
    layer.weight.data = w
    state = torch_load_file(str(save_torch_state_dict(layer, tmp_path / "t.safetensors")))
    np.testing.assert_array_equal(state["weight"].numpy(), w)


def test_save_accepts_a_mapping_and_rejects_other_suffixes(tmp_path: Path) -> None:
    arrays = {"w": np.ones((2, 2), np.float32), "n": np.array(3, np.int64)}
    back = load_torch_state_dict(save_torch_state_dict(arrays, tmp_path / "m.safetensors"))
    assert back["n"].shape == () and int(back["n"]) == 3
    with pytest.raises(ValueError, match=r"Expected a weights file ending in .*Received: path='.*m\.npz'"):
        save_torch_state_dict(arrays, tmp_path / "m.npz")


# ---------------------------------------------------------------------------- mismatch report
def test_wrong_architecture_lists_missing_unexpected_and_both_shapes(tmp_path: Path) -> None:
    wider = tnn.Sequential(
        tnn.Flatten(), tnn.Linear(36, 32, bias=False), tnn.BatchNorm1d(32), tnn.ReLU(), tnn.Dropout(0.3),
        tnn.Linear(32, 3), tnn.ReLU(), tnn.Linear(3, 3),
    )  # fmt: skip
    path = tmp_path / "wider.safetensors"
    torch_save_file(wider.state_dict(), str(path))
    ours, _ = mlp_pair()
    before = ours.state_dict()
    with pytest.raises(StateDictError) as info:
        load_torch_weights(ours, path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert (
        "size mismatch for '1.weight': Expected shape (16, 36) (in the model). Received: shape=(32, 36)"
        in message
    )
    assert "size mismatch for '2.running_mean': Expected shape (16,)" in message
    assert "Missing key(s) in state_dict: '6.weight'" in message and "'9.bias'" in message
    assert "Unexpected key(s) in state_dict: '5.bias', '7.bias', '7.weight'" in message  # file order
    assert (
        "size mismatch for '5.weight': Expected shape (8, 16) (in the model). Received: shape=(3, 32)"
        in message
    )
    for key, value in ours.state_dict().items():  # nothing was copied
        np.testing.assert_array_equal(value, before[key])


def test_non_strict_load_reports_what_it_skipped(tmp_path: Path) -> None:
    layer = tnn.Linear(4, 2)
    path = tmp_path / "l.pt"
    torch.save({"weight": layer.weight.detach(), "extra": torch.zeros(1)}, path)
    ours = nn.Linear(4, 2)
    missing, unexpected = load_torch_weights(ours, path, strict=False)
    assert (missing, unexpected) == (["bias"], ["extra"])
    np.testing.assert_array_equal(ours.weight.numpy(), layer.weight.detach().numpy())


# ---------------------------------------------------------------------------- reading .pt safely
def test_pt_checkpoint_dict_needs_a_key_and_names_candidates(tmp_path: Path) -> None:
    _, theirs = mlp_pair()
    path = tmp_path / "ckpt.pth"
    torch.save({"model": theirs.state_dict(), "epoch": 3}, path)
    with pytest.raises(ValueError, match=r"non-tensor values at model, epoch.*key= \(candidates: model\)"):
        load_torch_state_dict(path)
    state = load_torch_state_dict(path, key="model")
    assert list(state) == list(theirs.state_dict())
    with pytest.raises(KeyError, match="Expected a key 'weights'"):
        load_torch_state_dict(path, key="weights")


def test_a_pickled_module_is_refused_not_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(tnn.Linear(2, 2), path)
    with pytest.raises(ValueError, match=r"weights_only=True.*save model\.state_dict"):
        load_torch_state_dict(path)


@pytest.mark.parametrize("numpy_knows_bfloat16", [True, False])
def test_bfloat16_tensors_are_widened_to_float32(
    numpy_knows_bfloat16: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if numpy_knows_bfloat16:
        pytest.importorskip("ml_dtypes")  # registers bfloat16 with NumPy (onnx imports it too)
    else:  # what safetensors' NumPy reader raises when nothing registered bfloat16
        import safetensors.numpy

        def no_bfloat16(*args: Any, **kwargs: Any) -> Any:
            raise TypeError("data type 'bfloat16' not understood")

        monkeypatch.setattr(safetensors.numpy, "load_file", no_bfloat16)
    value = torch.tensor([1.5, -2.25, 3.0], dtype=torch.bfloat16)
    torch_save_file({"w": value}, str(tmp_path / "bf.safetensors"))
    torch.save({"w": value}, tmp_path / "bf.pt")
    for name in ("bf.safetensors", "bf.pt"):
        w = load_torch_state_dict(tmp_path / name)["w"]
        assert w.dtype == np.float32
        np.testing.assert_array_equal(w, [1.5, -2.25, 3.0])


def test_truncated_files_are_reported_as_unreadable(tmp_path: Path) -> None:
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"Expected a file written by torch\.save in .*empty\.pt"):
        load_torch_state_dict(tmp_path / "empty.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x05not a header")
    with pytest.raises(
        ValueError, match=r"Expected a safetensors file in .*junk\.safetensors. Received: unreadable"
    ):
        load_torch_state_dict(tmp_path / "junk.safetensors")


def test_missing_file_unknown_suffix_and_checkpoint_tensor_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        load_torch_state_dict(tmp_path / "absent.safetensors")
    (tmp_path / "w.h5").write_bytes(b"")
    with pytest.raises(ValueError, match=r"ending in \.safetensors, \.pt, \.pth, \.bin"):
        load_torch_state_dict(tmp_path / "w.h5")
    save_checkpoint(tmp_path / "last", {"model.0.weight": np.ones(2, np.float32)})
    tensors = next(tmp_path.glob("last.*.safetensors"))
    with pytest.raises(ValueError, match="tensor file of a gradcraft checkpoint"):
        load_torch_state_dict(tensors)


def test_pt_files_without_pytorch_name_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.pt"
    torch.save(OrderedDict(w=torch.ones(2)), path)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ImportError, match="needs PyTorch: pip install torch"):
        load_torch_state_dict(path)
    with pytest.raises(ImportError, match="needs PyTorch: pip install torch"):
        save_torch_state_dict({"w": np.ones(2, np.float32)}, tmp_path / "out.pt")
