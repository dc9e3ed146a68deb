"""Search spaces: parsing, errors that name the key, grids and the coarse-to-fine narrowing."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from gradcraft.config import load_recipe, recipes_dir, shipped_recipes
from gradcraft.tune.search import check_space
from gradcraft.tune.space import (
    Categorical,
    FloatRange,
    IntRange,
    SearchSpace,
    SpaceError,
    load_space,
    narrow,
    narrow_space,
    parse_space,
    yaml_text,
)

FULL = {
    "grid": 3,
    "params": {
        "optimizer.lr": {"distribution": "log_uniform", "low": 1e-4, "high": 1e-2},
        "model.dropout": {"distribution": "uniform", "low": 0.0, "high": 0.5, "grid": 2},
        "batch_size": {"distribution": "int", "low": 32, "high": 256, "log": True},
        "model.widths": {"distribution": "categorical", "choices": [[64], [128, 64]]},
    },
    "stages": [
        {"name": "coarse", "trials": 8, "budget": "epochs=1"},
        {"name": "fine", "trials": 2, "budget": "epochs=3", "top_k": 3, "widen": 0.5},
    ],
}


def test_parse_space_builds_each_distribution_and_the_stages() -> None:
    space = parse_space(FULL, source="s.yaml")
    assert space.params["optimizer.lr"] == FloatRange(1e-4, 1e-2, log=True)
    assert space.params["model.dropout"] == FloatRange(0.0, 0.5, log=False, grid=2)
    assert space.params["batch_size"] == IntRange(32, 256, log=True)
    assert space.params["model.widths"] == Categorical(([64], [128, 64]))
    assert [s.name for s in space.stages] == ["coarse", "fine"]
    assert space.stages[1].top_k == 3 and space.stages[1].widen == 0.5 and space.stages[0].top_k is None


def test_yaml_1_1_exponent_without_dot_is_read_as_a_number() -> None:
    space = parse_space(
        yaml.safe_load("params: {optimizer.lr: {distribution: log_uniform, low: 1e-4, high: 1e-2}}")
    )
    assert space.params["optimizer.lr"] == FloatRange(1e-4, 1e-2, log=True)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"distribution": "loguniform", "low": 1e-4, "high": 1e-2}, "did you mean 'log_uniform'"),
        (
            {"distribution": "uniform", "low": 0.5, "high": 0.5},
            "Expected low < high. Received: low=0.5, high=0.5",
        ),
        ({"distribution": "uniform", "low": 0.9, "high": 0.1}, "Expected low < high"),
        ({"distribution": "log_uniform", "low": 0.0, "high": 1.0}, "Expected low > 0 on a log axis"),
        ({"distribution": "int", "low": 0, "high": 8, "log": True}, "Expected low > 0 on a log axis"),
        ({"distribution": "int", "low": 1.5, "high": 8}, "Expected low to be an integer"),
        ({"distribution": "uniform", "lo": 0.0, "high": 1.0}, "unknown key 'lo'; did you mean 'low'"),
        ({"distribution": "uniform", "high": 1.0}, "Expected 'low'"),
        ({"distribution": "categorical", "choices": []}, "non-empty list of choices"),
        ({"distribution": "categorical", "choices": [1, 1]}, "distinct choices"),
        ({"distribution": "uniform", "low": 0.0, "high": 1.0, "grid": 1}, "grid >= 2"),
        ("log_uniform(1e-4, 1e-2)", "Expected a mapping"),
    ],
)
def test_malformed_entries_are_reported_with_file_and_key(entry: object, expected: str) -> None:
    with pytest.raises(SpaceError) as err:
        parse_space({"params": {"optimizer.lr": entry}}, source="my_space.yaml")
    message = str(err.value)
    assert message.startswith("my_space.yaml: optimizer.lr: ")
    assert expected in message


def test_malformed_top_level_and_stages_are_reported() -> None:
    with pytest.raises(SpaceError, match="unknown key 'param'; did you mean 'params'"):
        parse_space({"param": {}}, source="s.yaml")
    with pytest.raises(SpaceError, match=r"s.yaml: params: Expected a mapping"):
        parse_space({"params": {}}, source="s.yaml")
    base = {"params": FULL["params"]}
    with pytest.raises(SpaceError, match=r"stages.0: Expected no top_k on the first stage"):
        parse_space({**base, "stages": [{"trials": 2, "top_k": 1}]}, source="s.yaml")
    with pytest.raises(
        SpaceError, match=r"stages.1: Expected keys .*unknown key 'trails'; did you mean 'trials'"
    ):
        parse_space({**base, "stages": [{"trials": 2}, {"trails": 2}]}, source="s.yaml")
    with pytest.raises(SpaceError, match="distinct stage names"):
        parse_space({**base, "stages": [{"name": "a", "trials": 2}, {"name": "a", "trials": 2}]})


def test_load_space_reports_yaml_syntax_errors_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("params:\n  optimizer.lr: {distribution: uniform, low: 0\n")
    with pytest.raises(SpaceError, match=r"bad.yaml:\d+: not valid YAML"):
        load_space(path)
    with pytest.raises(FileNotFoundError, match="no such search-space file"):
        load_space(tmp_path / "missing.yaml")


BASE_RECIPE = {
    "model": {"dropout": 0.1},
    "optimizer": {"lr": 0.01},
    "regularizers": [{"type": "l2", "weight": 1e-4}],
}


@pytest.mark.parametrize(
    ("key", "entry", "expected"),
    [
        ("optimizer.lrr", {"distribution": "log_uniform", "low": 1e-4, "high": 1e-2}, "did you mean 'lr'"),
        ("model.dropout", {"distribution": "uniform", "low": 0.0, "high": 1.5}, "model.dropout=1.5"),
        ("regularizers.3.weight", {"distribution": "log_uniform", "low": 1e-6, "high": 1e-3}, "not an index"),
        (
            "model.activation",
            {"distribution": "categorical", "choices": ["relu", "rellu"]},
            "did you mean 'relu'",
        ),
    ],
)
def test_keys_and_values_the_recipe_schema_rejects_are_reported_with_the_key(
    key: str, entry: dict, expected: str
) -> None:
    space = parse_space({"params": {key: entry}}, source="s.yaml")
    with pytest.raises(SpaceError) as err:
        check_space(space, BASE_RECIPE)
    assert str(err.value).startswith(f"s.yaml: {key}: Expected a recipe key")
    assert expected in str(err.value)


def test_valid_keys_pass_the_schema_check_and_budget_keys_may_not_be_searched() -> None:
    space = parse_space(
        {
            "params": {
                "regularizers.0.weight": {"distribution": "log_uniform", "low": 1e-6, "high": 1e-3},
                "epochs": {"distribution": "int", "low": 1, "high": 4},
            }
        },
        source="s.yaml",
    )
    check_space(space, BASE_RECIPE)
    with pytest.raises(SpaceError, match=r"s.yaml: epochs: .*also set by the budget"):
        check_space(space, BASE_RECIPE, ["epochs=2"])


def test_grid_values_are_linear_or_log_spaced_and_categorical_uses_choices() -> None:
    space = parse_space(FULL)
    grid = space.grid_space()
    np.testing.assert_allclose(grid["optimizer.lr"], [1e-4, 1e-3, 1e-2])
    assert grid["model.dropout"] == [0.0, 0.5]  # its own grid: 2 beats the default 3
    assert grid["batch_size"] == [32, 91, 256]  # geomspace(32, 256, 3) rounded
    assert grid["model.widths"] == ["[64]", "[128, 64]"]
    assert space.grid_size() == 3 * 2 * 3 * 2
    no_grid = parse_space({"params": {"optimizer.lr": FULL["params"]["optimizer.lr"]}}, source="s.yaml")
    with pytest.raises(SpaceError, match=r"s.yaml: optimizer.lr: Expected 'grid: N'"):
        no_grid.grid_space()


def test_categorical_labels_map_back_to_values() -> None:
    cat = Categorical(([64], [128, 64], "x", 3))
    assert cat.labels == ["[64]", "[128, 64]", "x", 3]
    for choice in cat.choices:
        assert cat.to_value(cat.to_raw(choice)) == choice


def test_yaml_text_round_trips_small_floats_and_lists() -> None:
    for value in (1e-5, 0.5, [512, 256], {"type": "l2", "weight": 1e-4}, "relu", True, None):
        assert yaml.safe_load(yaml_text(value)) == value


# ---------------------------------------------------------------------------- narrowing
def test_narrow_linear_axis_widens_the_top_span_by_the_factor() -> None:
    new = narrow(FloatRange(0.0, 1.0), [0.4, 0.6], widen=0.25)
    assert new.low == pytest.approx(0.35) and new.high == pytest.approx(0.65)


def test_narrow_log_axis_works_on_exponents() -> None:
    new = narrow(FloatRange(1e-5, 1e-1, log=True), [1e-4, 1e-3], widen=0.5)
    # span of log10 values [-4, -3] widened by 0.5 on each side: [-4.5, -2.5]
    assert math.log10(new.low) == pytest.approx(-4.5) and math.log10(new.high) == pytest.approx(-2.5)
    assert new.log


def test_narrow_clips_to_the_original_range_exactly() -> None:
    new = narrow(FloatRange(1e-4, 1e-2, log=True), [1e-4, 3e-4], widen=1.0)
    assert new.low == 1e-4  # clipped, not 10**log10(1e-4)
    assert 3e-4 < new.high < 1e-2
    top = narrow(FloatRange(0.0, 0.5), [0.45, 0.5], widen=1.0)
    assert top.high == 0.5 and top.low == pytest.approx(0.4)


def test_narrow_around_one_value_keeps_a_minimum_width() -> None:
    new = narrow(FloatRange(0.0, 1.0), [0.5], widen=0.25, min_span=0.1)
    # s = 0.1 of the range, new half-width (1/2 + 1/4) * 0.1
    assert new.low == pytest.approx(0.425) and new.high == pytest.approx(0.575)


def test_narrow_integer_axis_rounds_outwards_and_keeps_two_values() -> None:
    new = narrow(IntRange(16, 512, log=True), [64, 128], widen=0.25)
    assert isinstance(new, IntRange) and new.log
    assert new.low <= 64 and new.high >= 128 and new.low >= 16 and new.high <= 512
    assert (new.low, new.high) == (math.floor(2 ** (6 - 0.25)), math.ceil(2 ** (7 + 0.25)))
    tight = narrow(IntRange(1, 3), [3], widen=0.0)
    assert tight.low < tight.high and tight.high == 3


def test_narrow_categorical_keeps_the_seen_choices_in_order() -> None:
    cat = Categorical(("sgd", "adam", "adamw"))
    assert narrow(cat, ["adamw", "sgd", "adamw"]).choices == ("sgd", "adamw")
    lists = Categorical(([64], [128, 64]))
    assert narrow(lists, [[128, 64]]).choices == ([128, 64],)


def test_narrow_space_narrows_every_axis_and_keeps_stages() -> None:
    space = parse_space(FULL)
    top = [
        {"optimizer.lr": 1e-3, "model.dropout": 0.1, "batch_size": 64, "model.widths": [64]},
        {"optimizer.lr": 2e-3, "model.dropout": 0.2, "batch_size": 128, "model.widths": [64]},
    ]
    new = narrow_space(space, top, widen=0.25)
    assert new.stages == space.stages
    for key, dist in new.params.items():
        old = space.params[key]
        if isinstance(dist, Categorical):
            assert dist.choices == ([64],)
            continue
        assert old.low <= dist.low < dist.high <= old.high
        assert all(dist.low <= p[key] <= dist.high for p in top)
        assert (dist.high - dist.low) < (old.high - old.low)


def test_narrow_needs_values() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        narrow(FloatRange(0.0, 1.0), [])


# ---------------------------------------------------------------------------- the shipped space
def test_shipped_space_is_valid_for_its_recipe_and_not_listed_as_a_recipe() -> None:
    path = recipes_dir() / "spaces" / "fashion_mlp.yaml"
    space = load_space(path)
    assert isinstance(space, SearchSpace) and len(space.stages) == 2
    recipe = load_recipe("fashion_mlp").to_dict()
    from gradcraft.diagnostics.ablation import parse_budget

    for stage in space.stages:
        check_space(space, recipe, parse_budget(stage.budget))
    assert "spaces" not in shipped_recipes() and "fashion_mlp" in shipped_recipes()
    assert all(p.parent == recipes_dir() for p in shipped_recipes().values())
