"""A tiny recipe and search spaces for the search tests (a trial takes well under a second)."""

from __future__ import annotations

from pathlib import Path

from tests.cli.helpers import tiny_recipe

RECIPE = """\
name: tiny
epochs: 3
batch_size: 32
seed: 0
model: {block: mlp, widths: [16], dropout: 0.1}
data: {dataset: tiny.npz, val_split: 0.25}
optimizer: {name: adam, lr: 0.01}
regularizers: [{type: l2, weight: 0.0001}]
logging: {progress: none}
"""

SPACE = """\
params:
  optimizer.lr: {distribution: log_uniform, low: 1.0e-4, high: 0.1}
  model.dropout: {distribution: uniform, low: 0.0, high: 0.5}
"""


def setup(directory: Path, space: str = SPACE, recipe: str = RECIPE) -> tuple[Path, Path]:
    """Write tiny.npz, the recipe and the space into ``directory``; returns (recipe, space)."""
    recipe_path = tiny_recipe(directory, recipe)
    space_path = directory / "space.yaml"
    space_path.write_text(space)
    return recipe_path, space_path
