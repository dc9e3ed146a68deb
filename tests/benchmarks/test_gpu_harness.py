"""The GPU benchmark's harness, run on the CPU: same models, batches and table for both frameworks."""

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the benchmark compares with PyTorch")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compare_torch_gpu.py"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("compare_torch_gpu", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(SCRIPT.parent))


def test_both_frameworks_train_the_same_model_and_the_table_has_a_row_per_setting(bench, capsys):
    bench.main(["--device", "cpu", "--models", "mlp,cnn", "--batch-sizes", "4", "--steps", "1", "--repeats", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [line.split("|")[1:-1] for line in lines if line.startswith("| mlp") or line.startswith("| cnn")]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [("mlp", "4"), ("cnn", "4")]
    for r in rows:
        assert float(r[2].replace(",", "")) > 0 and float(r[3].replace(",", "")) > 0
        assert r[4].strip().endswith("x")

