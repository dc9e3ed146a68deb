"""The babysitting commands end to end on the tiny recipe: `gradcraft diagnose` and `gradcraft ablate`."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradcraft.cli import main
from tests.cli.helpers import tiny_recipe


def test_diagnose_command_writes_findings_with_verdicts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tiny_recipe(tmp_path)
    out = tmp_path / "diag"
    code = main(["diagnose", str(recipe), "--quick", "--check", "initial_loss", "--check", "data", "--out", str(out)])
    assert code in (0, 1)  # 1 only when a finding is a problem
    printed = capsys.readouterr().out.lower()
    assert "initial loss" in printed or "initial_loss" in printed
    assert (out / "diagnosis.md").is_file()


def test_ablate_command_runs_every_variant_and_writes_one_report(tmp_path: Path) -> None:
    recipe = tiny_recipe(tmp_path)
    out = tmp_path / "ablation"
    code = main(["ablate", str(recipe), "--vary", "optimizer.name=sgd,adam", "--budget", "epochs=1", "--out", str(out)])
    assert code == 0
    report = next(out.glob("*.md")).read_text()
    assert "sgd" in report and "adam" in report
