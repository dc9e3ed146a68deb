import json
from pathlib import Path

import pytest

from gradcraft.config import load_recipe
from gradcraft.diagnostics import expand_variants, parse_budget, parse_vary, run_ablation
from gradcraft.diagnostics.ablation import recipe_defaults, steps_to_loss

ABLATIONS = Path(__file__).resolve().parents[2] / "recipes" / "ablations"


def test_parse_vary_reads_yaml_values_and_keeps_brackets_together():
    assert parse_vary("model.activation=relu,tanh") == ("model.activation", ["relu", "tanh"])
    assert parse_vary("model.widths=[64,64],[128]") == ("model.widths", [[64, 64], [128]])
    assert parse_vary("optimizer.lr=0.1,1e-3")[1] == [0.1, 0.001]
    with pytest.raises(ValueError, match="KEY=V1"):
        parse_vary("model.activation")


def test_variants_are_all_combinations():
    vs = expand_variants(["a=1,2", "b=x,y,z"])
    assert len(vs) == 6 and vs[0] == {"a": 1, "b": "x"} and vs[-1] == {"a": 2, "b": "z"}
    with pytest.raises(ValueError, match="once"):
        expand_variants(["a=1", "a=2"])


def test_budget_shorthands_become_overrides():
    assert parse_budget("epochs=2,subset=5000") == ["epochs=2", "data.subset=5000"]
    assert parse_budget(None) == []
    with pytest.raises(ValueError, match="budget"):
        parse_budget("epochs")


def test_steps_to_loss_counts_from_where_the_smoothed_loss_stays_below():
    steps = list(range(1, 21))
    losses = [2.0] * 5 + [0.1] * 15
    hit = steps_to_loss(steps, losses, 1.0)
    assert hit is not None and 6 < hit <= 12
    assert steps_to_loss(steps, losses, 0.01) is None
    dip = [2.0] * 5 + [0.1] * 15 + [2.0] * 30 + [0.1] * 30  # a dip that does not last
    assert steps_to_loss(list(range(1, 81)), dip, 1.0) > 50


def test_run_ablation_trains_each_variant_and_writes_one_report(tiny_recipe, tmp_path):
    result = run_ablation(tiny_recipe, vary=["model.activation=relu,tanh"], budget="epochs=2",
                          out_dir=tmp_path / "abl", log=None)
    assert [v.label for v in result.variants] == ["activation=relu", "activation=tanh"]
    rows = result.table()
    assert all(r["best_val_accuracy"] > 0.5 and not r["error"] for r in rows)
    assert all(len(v.series("val_accuracy")) == 2 for v in result.variants)
    assert all(r["gap"] is not None and r["seconds"] > 0 for r in rows)
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| activation=tanh |" in md and "epochs=2" in md and "curves.png" in md
    assert (tmp_path / "abl" / "curves.png").exists() and (tmp_path / "abl" / "steps.png").exists()
    data = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert data["rows"][0]["variant"] == "activation=relu"
    assert (tmp_path / "abl" / "activation-relu" / "results.json").exists()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_diverging_variant_is_reported_not_fatal(tiny_recipe, tmp_path):
    result = run_ablation(tiny_recipe, vary=["optimizer.lr=0.01,1e6"], budget="epochs=1",
                          overrides=["optimizer.name=sgd", "optimizer.momentum=0.0"],
                          out_dir=tmp_path / "abl", log=None, plots=False)
    rows = {r["variant"]: r for r in result.table()}
    assert not rows["lr=0.01"]["error"]
    assert "NaN" in rows["lr=1e+06"]["error"]


@pytest.mark.parametrize("path", sorted(ABLATIONS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_ablation_recipes_declare_valid_variants(path):
    from gradcraft.config import apply_overrides, parse_recipe

    vary, budget = recipe_defaults(path)
    assert vary, f"{path.name} has no '# vary:' line"
    base = load_recipe(path, parse_budget(budget))
    for combo in expand_variants(vary):
        parse_recipe(apply_overrides(base.to_dict(), [f"{k}={json.dumps(v)}" for k, v in combo.items()]))


def test_with_varies_several_keys_together():
    vs = expand_variants(["with={},{model.dropout: 0.5},{optimizer.name: sgd, optimizer.momentum: 0.0}"])
    assert vs == [{}, {"model.dropout": 0.5}, {"optimizer.name": "sgd", "optimizer.momentum": 0.0}]
    with pytest.raises(ValueError, match="mappings"):
        expand_variants(["with=1,2"])
