"""The CPU benchmark's timing loop: alternation, warm-ups and the pause between frameworks."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compare_torch.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("compare_torch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_timed_block_follows_a_pause_and_a_warm_up_of_the_same_framework(bench, monkeypatch):
    events = []
    monkeypatch.setattr(bench.time, "sleep", lambda seconds: events.append(f"sleep {seconds}"))

    def record(name):
        return lambda: events.append(name)

    ours, theirs = bench.interleaved(
        record("ours"), record("theirs"), 3, warm_ours=record("warm ours"), warm_theirs=record("warm theirs")
    )
    pause = f"sleep {bench.SETTLE_SECONDS}"
    assert bench.SETTLE_SECONDS > 0
    assert events == [
        pause, "warm ours", "ours", pause, "warm theirs", "theirs",  # repeat 0: ours first
        pause, "warm theirs", "theirs", pause, "warm ours", "ours",  # repeat 1: theirs first
        pause, "warm ours", "ours", pause, "warm theirs", "theirs",
    ]
    assert ours >= 0 and theirs >= 0


def test_rounds_keep_each_frameworks_times_in_order_and_the_spread_is_the_ratios_iqr(bench, monkeypatch):
    monkeypatch.setattr(bench.time, "sleep", lambda seconds: None)
    clock = iter(range(100))
    monkeypatch.setattr(bench, "timed", lambda fn: next(clock))
    ours, theirs = bench.interleaved_rounds(lambda: None, lambda: None, 4)
    assert ours == [0, 3, 4, 7] and theirs == [1, 2, 5, 6]  # alternating which goes first
    assert bench.ratio_spread([1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 1.0, 1.0, 1.0, 1.0]) == "2.00–4.00"
    assert bench.ratio_spread([0.8], [1.0]) == "0.80"
    assert bench.ratio_spread([], []) == "-"
