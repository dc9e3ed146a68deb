"""A tiny dataset and recipe for end-to-end runs of the command line (seconds each)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.train.helpers import write_npz

REPO = Path(__file__).resolve().parents[2]

RECIPE = """\
name: tiny
description: "a tiny MLP on generated 6x6 images"
epochs: 3
batch_size: 32
seed: 0
model: {block: mlp, widths: [16], norm: batchnorm, dropout: 0.2}
data:
  dataset: tiny.npz
  val_split: 0.2
  augmentation: [{type: random_crop, padding: 1}, {type: hflip}]
optimizer: {name: adam, lr: 0.01}
schedule: {name: cosine, warmup_epochs: 1}
callbacks: {checkpoint: {every_steps: 4}}
logging: {log_every_steps: 2, progress: line}
"""


def tiny_recipe(directory: Path, text: str = RECIPE, name: str = "tiny.yaml") -> Path:
    """Write tiny.npz and the recipe into ``directory``; returns the recipe path."""
    write_npz(directory / "tiny.npz")
    path = directory / name
    path.write_text(text)
    return path


def subprocess_env(tmp: Path) -> dict[str, str]:
    """Environment for ``python -m gradcraft`` in a child process: this checkout, one BLAS thread."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["MPLCONFIGDIR"] = str(tmp / "mpl")
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


PYTHON = sys.executable
