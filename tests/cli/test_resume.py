"""Kill a training process with SIGKILL mid-epoch, resume it, and get bit-identical weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("typer")
pytest.importorskip("safetensors")

from gradcraft.io.checkpoint import load_checkpoint
from tests.cli.helpers import PYTHON, RECIPE, subprocess_env, tiny_recipe

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")

# every source of randomness in play: shuffling, crop + flip augmentation, mixup, dropout
RESUME_RECIPE = RECIPE.replace(
    "logging: {log_every_steps: 2, progress: line}",
    "logging: {log_every_steps: 2, progress: line, tensorboard: false, plots: false}",
).replace("  augmentation:", "  mixing: {kind: mixup, alpha: 0.4}\n  augmentation:")

# The training process: the real CLI, with a hook that announces step STOP (after the checkpoint
# logic of that step ran) by writing a marker file and then waits to be killed.
DRIVER = """
import sys, time
from pathlib import Path
from gradcraft.train import callbacks

STOP, MARKER = int(sys.argv[1]), Path(sys.argv[2])
original = callbacks.ModelCheckpoint.on_batch_end

def on_batch_end(self, trainer):
    original(self, trainer)
    if trainer.global_step == STOP:
        MARKER.write_text(str(trainer.global_step))
        time.sleep(600)

callbacks.ModelCheckpoint.on_batch_end = on_batch_end
from gradcraft.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [PYTHON, "-m", "gradcraft", *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=subprocess_env(cwd),
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    recipe = tiny_recipe(tmp_path, RESUME_RECIPE)
    # 192 training examples / 32 = 6 steps per epoch, 18 in all; checkpoints every 4 steps.
    # Killed at step 10 (epoch 2, batch 4): the last checkpoint is step 8, so steps 9-10 are redone.
    killed, marker = tmp_path / "killed", tmp_path / "marker"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    proc = subprocess.Popen(
        [PYTHON, str(driver), "10", str(marker), "train", str(recipe), "--out", str(killed), "--quiet"],
        cwd=tmp_path,
        env=subprocess_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"training exited before the marker: {proc.communicate()}")
            if time.monotonic() > deadline:
                pytest.fail("training did not reach step 10 in time")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    last = load_checkpoint(killed / "checkpoints" / "last.json")
    assert last.meta["summary"]["global_step"] == 8 and last.meta["summary"]["phase"] == "batch"
    assert not (killed / "results.json").exists()

    _run(["train", "--resume", str(killed), "--quiet"], tmp_path)
    reference = tmp_path / "reference"
    _run(["train", str(recipe), "--out", str(reference), "--quiet"], tmp_path)

    resumed_ckpt = load_checkpoint(killed / "checkpoints" / "last.json")
    reference_ckpt = load_checkpoint(reference / "checkpoints" / "last.json")
    assert resumed_ckpt.meta["summary"]["global_step"] == reference_ckpt.meta["summary"]["global_step"] == 18
    assert set(resumed_ckpt.arrays) == set(reference_ckpt.arrays)
    model_keys = [k for k in reference_ckpt.arrays if k.startswith("model.")]
    assert model_keys
    for key, ref in reference_ckpt.arrays.items():  # weights, optimizer moments, history, ...
        np.testing.assert_array_equal(resumed_ckpt.arrays[key], ref, err_msg=key)

    results = [json.loads((run / "results.json").read_text()) for run in (killed, reference)]
    assert results[0]["test_accuracy"] == results[1]["test_accuracy"]
    assert results[0]["test_loss"] == results[1]["test_loss"]

    def epochs(run: Path) -> list[dict[str, float]]:
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        drop = {"epoch_time", "images_per_sec"}
        return [
            {k: v for k, v in r.items() if k not in drop} for r in lines if r["kind"] in ("epoch", "step")
        ]

    assert epochs(killed) == epochs(reference)  # the killed process's extra lines were dropped
