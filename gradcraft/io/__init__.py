"""Reading and writing models and training state: checkpoints (safetensors + JSON, no pickle)."""

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

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "atomic_write_bytes",
    "atomic_write_text",
    "checkpoint_exists",
    "load_checkpoint",
    "pack_state",
    "save_checkpoint",
    "unpack_state",
]
