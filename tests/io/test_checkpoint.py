"""Checkpoint files: safetensors + JSON, atomic, verified, never unpickled."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from gradcraft.io.checkpoint import (
    CheckpointError,
    atomic_write_text,
    checkpoint_exists,
    load_checkpoint,
    pack_state,
    save_checkpoint,
    unpack_state,
)


def test_roundtrip_arrays_and_meta(tmp_path: Path) -> None:
    arrays = {
        "w": np.arange(12, dtype=np.float32).reshape(3, 4),
        "steps": np.array([1, 2], np.int64),
        "mask": np.array([True, False]),
    }
    path = save_checkpoint(tmp_path / "last", arrays, {"epoch": 3, "lr": 0.1})
    assert path == tmp_path / "last.json"
    assert checkpoint_exists(tmp_path / "last")
    ckpt = load_checkpoint(tmp_path / "last")
    assert ckpt.meta == {"epoch": 3, "lr": 0.1}
    for k, v in arrays.items():
        np.testing.assert_array_equal(ckpt.arrays[k], v)
        assert ckpt.arrays[k].dtype == v.dtype


def test_transposed_and_strided_arrays_are_saved_correctly(tmp_path: Path) -> None:
    # safetensors 0.8 writes non-C-contiguous arrays wrongly; the checkpoint must not.
    w = np.arange(24, dtype=np.float32).reshape(4, 6)
    arrays = {"transposed": w.T, "strided": w[:, ::2], "fortran": np.asfortranarray(w)}
    save_checkpoint(tmp_path / "c", arrays)
    ckpt = load_checkpoint(tmp_path / "c.json")
    for k, v in arrays.items():
        np.testing.assert_array_equal(ckpt.arrays[k], v)


def test_zero_dimensional_and_empty_arrays_keep_their_shape(tmp_path: Path) -> None:
    arrays = {"count": np.array(7, np.int64), "empty": np.zeros((0, 3), np.float32)}
    save_checkpoint(tmp_path / "c", arrays)
    back = load_checkpoint(tmp_path / "c").arrays
    assert back["count"].shape == () and back["count"] == 7
    assert back["empty"].shape == (0, 3)


def test_old_tensor_file_is_removed_only_after_the_new_entry_point(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "last", {"a": np.zeros(3)}, {"n": 1})
    save_checkpoint(tmp_path / "last", {"a": np.ones(3)}, {"n": 2})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len([f for f in files if f.endswith(".safetensors")]) == 1
    assert not [f for f in files if f.endswith(".tmp")]
    np.testing.assert_array_equal(load_checkpoint(tmp_path / "last").arrays["a"], np.ones(3))


def test_other_checkpoints_in_the_directory_are_kept(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "best", {"a": np.zeros(3)})
    save_checkpoint(tmp_path / "last", {"a": np.ones(3)})
    save_checkpoint(tmp_path / "last", {"a": np.full(3, 2.0)})
    np.testing.assert_array_equal(load_checkpoint(tmp_path / "best").arrays["a"], np.zeros(3))


def test_corrupt_tensor_file_is_refused_with_its_path(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "last", {"a": np.zeros(100)})
    tensors = tmp_path / json.loads(path.read_text())["tensors"]
    data = bytearray(tensors.read_bytes())
    data[-5] ^= 0xFF
    tensors.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256") as info:
        load_checkpoint(path)
    assert str(tensors) in str(info.value)


def test_truncated_entry_point_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "last", {"a": np.zeros(3)})
    path.write_text(path.read_text()[:20])
    with pytest.raises(CheckpointError, match="not a gradcraft checkpoint") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_missing_tensor_file_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "last", {"a": np.zeros(3)})
    for p in tmp_path.glob("*.safetensors"):
        p.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b'{"format": "something-else"}', b"\x80\x04\x95pickle", b"[1, 2]"])
def test_foreign_files_are_refused_with_their_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "foreign.json"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_a_safetensors_file_is_not_an_entry_point(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"\.json entry point"):
        load_checkpoint(tmp_path / "model.safetensors")


def test_missing_checkpoint_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint") as info:
        load_checkpoint(tmp_path / "nothing")
    assert str(tmp_path / "nothing.json") in str(info.value)


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "last", {"a": np.zeros(3)})
    doc = json.loads(path.read_text())
    doc["version"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(path)


def test_unsupported_dtype_is_reported(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="'names'"):
        save_checkpoint(tmp_path / "x", {"names": np.array(["a", "b"])})


def test_pack_state_roundtrips_nested_types() -> None:
    state = {
        "state": {0: {"step": np.int64(3), "exp_avg": np.ones((2, 2), np.float32)}},
        "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1]}],
        "rng": np.random.default_rng(0).bit_generator.state,
        "none": None,
        "f32": np.float32(0.1),
    }
    tree, arrays = pack_state(state, prefix="opt")
    text = json.dumps(tree)
    assert list(arrays) == ["opt.state.0.exp_avg"]
    back = unpack_state(json.loads(text), arrays)
    assert back["state"][0]["step"] == 3 and isinstance(back["state"][0]["step"], np.int64)
    assert back["param_groups"][0]["betas"] == (0.9, 0.999)
    assert back["rng"] == state["rng"]
    assert back["f32"] == np.float32(0.1) and back["f32"].dtype == np.float32
    np.testing.assert_array_equal(back["state"][0]["exp_avg"], np.ones((2, 2)))


def test_pack_state_rejects_objects_with_their_path() -> None:
    with pytest.raises(TypeError, match=r"'a\.b'"):
        pack_state({"a": {"b": object()}})


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert os.listdir(target.parent) == ["f.txt"]
