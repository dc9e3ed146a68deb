"""Running exported ONNX graphs with ONNX Runtime, and gradcraft models in evaluation mode."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

import gradcraft
from gradcraft import nn


def ort_session(model: Any) -> Any:
    """An ONNX Runtime CPU session for an ``onnx.ModelProto`` or a path (telemetry off)."""
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"  # before onnxruntime's first import
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    source = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def ort_run(model: Any, x: np.ndarray) -> np.ndarray:
    """The graph's single output for input ``x``."""
    session = ort_session(model)
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def eval_forward(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """``model(x)`` in evaluation mode without recording a graph."""
    was_training = model.training
    model.eval()
    try:
        with gradcraft.no_grad():
            return model(gradcraft.Tensor(x)).numpy()
    finally:
        model.train(was_training)


def randomize_batch_norms(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial γ, β and running statistics for every batch norm (as after training)."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            if m.affine:
                m.weight.data[...] = rng.uniform(0.5, 1.5, c)
                m.bias.data[...] = rng.normal(0, 0.3, c)
            if m.running_mean is not None:
                m.running_mean.data[...] = rng.normal(0, 0.5, c)
                m.running_var.data[...] = rng.uniform(0.5, 2.0, c)
