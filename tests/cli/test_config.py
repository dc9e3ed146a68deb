"""The recipe schema: defaults, strict validation, errors with path, line and suggestion."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pydantic")
pytest.importorskip("yaml")

from gradcraft.config import (
    Recipe,
    RecipeError,
    apply_overrides,
    explain,
    find_recipe,
    load_recipe,
    parse_recipe,
    shipped_recipes,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_empty_recipe_gets_every_default() -> None:
    recipe = parse_recipe({})
    assert recipe.epochs == 10 and recipe.batch_size == 128 and recipe.seed == 0
    assert recipe.model.block == "mlp" and recipe.optimizer.name == "adam"
    assert recipe.data.dataset == "fashion-mnist" and recipe.data.val_split == 0.1


def test_every_field_has_a_description_or_is_a_section() -> None:
    text = explain()
    for line in text.splitlines():
        assert "#" in line or line.startswith("model.layers[]: {type: "), line
    assert "PydanticUndefined" not in text
    assert "regularizers[].weight = (required)" in text


def test_resolved_recipe_roundtrips_through_yaml(tmp_path: Path) -> None:
    recipe = parse_recipe({"model": {"block": "cnn", "widths": [8, 16]}, "epochs": 2})
    path = write(tmp_path, recipe.to_yaml())
    assert load_recipe(path) == recipe


def test_typo_names_the_key_its_line_and_the_closest_valid_key(tmp_path: Path) -> None:
    path = write(tmp_path, "epochs: 2\nmodel:\n  block: mlp\n  widht: [10]\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert f"{path}:4: model.widht: unknown key; did you mean 'widths'?" in message


def test_top_level_typo_is_suggested(tmp_path: Path) -> None:
    path = write(tmp_path, "epoch: 3\n")
    with pytest.raises(RecipeError, match=r":1: epoch: unknown key; did you mean 'epochs'\?"):
        load_recipe(path)


def test_wrong_type_names_the_path_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, "batch_size: many\n")
    with pytest.raises(RecipeError, match=r":1: batch_size: .*integer.*'many'"):
        load_recipe(path)


def test_bad_choice_suggests_the_closest_one(tmp_path: Path) -> None:
    path = write(tmp_path, "optimizer:\n  name: adamm\n")
    with pytest.raises(RecipeError, match=r":2: optimizer.name: .*did you mean 'adam'\?"):
        load_recipe(path)


def test_layer_list_errors_point_into_the_list(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "model:\n  layers:\n    - flatten\n    - {type: linear, out_feature: 10}\n    - {type: maxpool}\n",
    )
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert ":4: model.layers.1.out_feature: unknown key; did you mean 'out_features'?" in message
    assert ":5: model.layers.2: unknown type 'maxpool'; did you mean 'maxpool2d'?" in message


def test_all_problems_are_reported_sorted_by_line(tmp_path: Path) -> None:
    path = write(tmp_path, "seed: -1\nepochs: 0\nlogging: {plots: maybe}\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    lines = [p.split(":")[1] for p in info.value.problems]
    assert lines == ["1", "2", "3"]


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    path = write(tmp_path, "epochs: 2\nmodel: [\n")
    with pytest.raises(RecipeError, match=r"recipe.yaml:\d+: not valid YAML"):
        load_recipe(path)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="mapping"):
        load_recipe(write(tmp_path, "- 1\n- 2\n"))


def test_overrides_are_parsed_as_yaml_and_applied(tmp_path: Path) -> None:
    path = write(tmp_path, "epochs: 2\n")
    recipe = load_recipe(path, ["optimizer.lr=0.05", "model.widths=[32, 16]", "data.mixing.kind=mixup"])
    assert recipe.optimizer.lr == 0.05
    assert recipe.model.widths == [32, 16]
    assert recipe.data.mixing.kind == "mixup"


def test_override_typo_is_reported_as_set(tmp_path: Path) -> None:
    path = write(tmp_path, "epochs: 2\n")
    with pytest.raises(RecipeError, match=r"--set optimizer.lrr: unknown key; did you mean 'lr'\?"):
        load_recipe(path, ["optimizer.lrr=0.1"])


def test_malformed_override_is_explained() -> None:
    with pytest.raises(RecipeError, match=r"key\.path=value"):
        apply_overrides({}, ["optimizer.lr"])
    with pytest.raises(RecipeError, match="is a value, not a section"):
        apply_overrides({"epochs": 3}, ["epochs.x=1"])


def test_override_into_a_list_by_index() -> None:
    data = {"model": {"layers": [{"type": "linear", "out_features": 3}]}}
    apply_overrides(data, ["model.layers.0.out_features=10"])
    assert data["model"]["layers"][0]["out_features"] == 10


def test_strings_in_layer_and_augmentation_lists_are_shorthand() -> None:
    recipe = parse_recipe(
        {
            "model": {"layers": ["flatten", {"type": "linear", "out_features": 10}]},
            "data": {"augmentation": ["hflip"]},
        }
    )
    assert recipe.model.layers[0].type == "flatten"
    assert recipe.data.augmentation[0].type == "hflip"


def test_plateau_on_validation_metric_needs_a_validation_split() -> None:
    with pytest.raises(RecipeError, match="val_split"):
        parse_recipe({"schedule": {"name": "plateau"}, "data": {"val_split": 0}})


def test_relative_npz_dataset_resolves_next_to_the_recipe(tmp_path: Path) -> None:
    (tmp_path / "tiny.npz").write_bytes(b"")
    recipe = load_recipe(write(tmp_path, "data: {dataset: tiny.npz}\n"))
    assert Path(recipe.data.dataset) == (tmp_path / "tiny.npz").resolve()


def test_shipped_recipes_validate() -> None:
    shipped = shipped_recipes()
    assert {"fashion_quick", "fashion_mlp", "fashion_cnn", "fashion_resnet"} <= set(shipped)
    for path in shipped.values():
        recipe = load_recipe(path)
        assert isinstance(recipe, Recipe)
        assert recipe.description


def test_find_recipe_by_name_and_suggestion() -> None:
    assert find_recipe("fashion_quick").name == "fashion_quick.yaml"
    with pytest.raises(FileNotFoundError, match="did you mean 'fashion_quick'"):
        find_recipe("fashion_quik")
