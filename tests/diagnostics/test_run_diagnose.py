from gradcraft.diagnostics import run_diagnose


def test_run_diagnose_builds_everything_from_the_recipe(tiny_recipe, tmp_path):
    report = run_diagnose(tiny_recipe, overrides=["model.widths=[32]"], out_dir=tmp_path / "diag", quick=True,
                          print_results=False, log=None)
    checks = {f.check for f in report.findings}
    assert {"data.scaling", "data.balance", "data.duplicates", "initial_loss", "activations", "gradients",
            "lr_range", "overfit_subset"} <= checks
    assert all(f.verdict != "problem" for f in report.findings), [f.line() for f in report.findings]
    assert report.title == "Diagnosis of recipe 'tiny'"
    text = (tmp_path / "diag" / "diagnosis.md").read_text()
    assert "lr_range.png" in text


def test_run_diagnose_flags_a_recipe_without_preprocessing(tiny_recipe):
    tiny_recipe["data"]["preprocessing"] = {"kind": "none"}
    report = run_diagnose(tiny_recipe, checks=("data",), print_results=False, log=None)
    scaling = next(f for f in report.findings if f.check == "data.scaling")
    assert scaling.verdict == "warning" and "always positive" in scaling.summary
