"""Reading and writing models and training state: checkpoints (safetensors + JSON, no pickle),
PyTorch-format state dicts and ONNX export (which needs the ``onnx`` extra only when called)."""

from gradcraft.io.checkpoint import (
    Checkpoint,
    CheckpointError,
    atomic_write_bytes,
    atomic_write_text,
    checkpoint_exists,
    load_checkpoint,
    pack_state,
    save_checkpoint,
    unpack_state,
)
from gradcraft.io.onnx_export import OnnxExportError, export_onnx, to_onnx
from gradcraft.io.torch_format import load_torch_state_dict, load_torch_weights, save_torch_state_dict

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "OnnxExportError",
    "atomic_write_bytes",
    "atomic_write_text",
    "checkpoint_exists",
    "export_onnx",
    "load_checkpoint",
    "load_torch_state_dict",
    "load_torch_weights",
    "pack_state",
    "save_checkpoint",
    "save_torch_state_dict",
    "to_onnx",
    "unpack_state",
]
