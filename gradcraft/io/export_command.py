"""``gradcraft export``: a trained model as ONNX and/or as a PyTorch-format state dict.

::

    gradcraft export runs/quick --onnx quick.onnx                       # logits of standardized inputs
    gradcraft export runs/quick --onnx quick.onnx --include-preprocessing --softmax
    gradcraft export runs/quick --torch quick.safetensors               # for torch's load_state_dict
    gradcraft export weights.pt --recipe fashion_cnn --onnx cnn.onnx    # PyTorch weights + a recipe

The model is rebuilt from the run's ``recipe.yaml`` (or ``--recipe``) exactly as ``gradcraft
predict`` rebuilds it, which loads the recipe's dataset for the input shape, the classes and (for
a weights file) the preprocessing statistics fitted on its training split.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register_export_command"]


def _load_model(source: Path, recipe: str | None, checkpoint: str) -> tuple[Any, Any, Any]:
    """(model with weights, fitted preprocessor or None, data bundle) for a run or a weights file."""
    from gradcraft.train.experiment import Experiment

    if source.is_dir():
        exp = Experiment.from_run_dir(source, quiet=True)
        exp.prepare(which=checkpoint)
    else:
        from gradcraft.config import find_recipe, load_recipe
        from gradcraft.io.torch_format import load_torch_weights

        assert recipe is not None
        recipe_dir = find_recipe(recipe).resolve().parent
        exp = Experiment(load_recipe(recipe), source.parent, quiet=True, recipe_dir=recipe_dir)
        exp.build(callbacks=False)
        load_torch_weights(exp.trainer.model, source)
    return exp.trainer.model, exp.preprocessor, exp.data


def register_export_command(app: Any) -> None:
    """Add the ``export`` command to the typer ``app`` of :mod:`gradcraft.cli`."""
    import typer

    @app.command("export")
    def export(
        source: Path = typer.Argument(  # noqa: B008 - typer declares arguments in defaults
            ...,
            help="A run directory written by 'gradcraft train', or a weights file (.safetensors, .pt, .pth, "
            ".bin: a PyTorch-format state dict) together with --recipe.",
        ),
        onnx_path: Path = typer.Option(None, "--onnx", help="Write the model as ONNX here."),  # noqa: B008
        torch_path: Path = typer.Option(  # noqa: B008
            None, "--torch", help="Write the weights as a PyTorch state dict here (.safetensors or .pt)."
        ),
        recipe: str = typer.Option(None, "--recipe", help="The recipe that built a weights file's model."),
        checkpoint: str = typer.Option("best", "--checkpoint", help="Of a run directory: best | last."),
        opset: int = typer.Option(17, "--opset", help="ONNX opset (17 up to the installed onnx's newest)."),
        softmax: bool = typer.Option(False, "--softmax", help="Output probabilities instead of logits."),
        include_preprocessing: bool = typer.Option(
            False,
            "--include-preprocessing",
            help="Fold the recipe's preprocessing (standardize, center, mean_image) into the graph, so it "
            "takes pixels in [0, 1] as 'gradcraft predict' does.",
        ),
        uint8_input: bool = typer.Option(
            False, "--uint8-input", help="Take raw 8-bit pixels (0-255) and scale them by 1/255 in the graph."
        ),
    ) -> None:
        """Export a trained model: ONNX (for ONNX Runtime and friends) or PyTorch-format weights.

        Examples: `gradcraft export runs/quick --onnx quick.onnx --include-preprocessing --softmax`,
        `gradcraft export runs/quick --torch quick.safetensors`,
        `gradcraft export weights.pt --recipe fashion_cnn --onnx cnn.onnx`.
        """
        from gradcraft.io.onnx_export import export_onnx
        from gradcraft.io.torch_format import save_torch_state_dict
        from gradcraft.nn.module import StateDictError

        if onnx_path is None and torch_path is None:
            raise typer.BadParameter("give --onnx PATH and/or --torch PATH")
        if checkpoint not in ("best", "last"):
            raise typer.BadParameter(f"--checkpoint must be best or last, not {checkpoint!r}")
        if not source.exists():
            raise FileNotFoundError(f"{source}: no such run directory or weights file")
        if source.is_dir() and recipe is not None:
            raise typer.BadParameter("a run directory brings its own recipe.yaml; drop --recipe")
        if source.is_file() and recipe is None:
            raise typer.BadParameter(
                f"{source} is a weights file: give --recipe, the recipe that built its model"
            )
        try:
            model, preprocessor, data = _load_model(source, recipe, checkpoint)
            if torch_path is not None:
                print(f"wrote {save_torch_state_dict(model, torch_path)} (PyTorch state dict)")
            if onnx_path is None:
                return
            if include_preprocessing and preprocessor is None:
                print("note: the recipe has no preprocessing to include", file=sys.stderr)
            if preprocessor is not None and not include_preprocessing:
                print(
                    f"note: the model expects inputs after {type(preprocessor).__name__}; add "
                    "--include-preprocessing to export a graph that takes pixels",
                    file=sys.stderr,
                )
            written = export_onnx(
                model,
                onnx_path,
                data.input_shape,
                opset=opset,
                softmax=softmax,
                preprocessor=preprocessor if include_preprocessing else None,
                uint8_input=uint8_input,
                metadata={"classes": json.dumps(data.classes), "source": source.name},
            )
        except (StateDictError, ImportError) as err:
            print(f"error: {err}", file=sys.stderr)
            raise typer.Exit(1) from None
        kind = "uint8" if uint8_input else "float32"
        print(
            f"wrote {written} (opset {opset}; input 'input' (batch, {', '.join(map(str, data.input_shape))}) "
            f"{kind}; output '{'probabilities' if softmax else 'logits'}' (batch, {len(data.classes)}))"
        )
