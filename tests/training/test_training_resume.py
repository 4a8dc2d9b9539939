"""Nothing lost: a run killed (SIGKILL) or stopped (SIGTERM) and resumed ends as an uninterrupted one.

The interrupted run is a subprocess that signals itself after a given step
(QUANTGPT_FAULT_AT_STEP); the resumed and the reference runs are in-process with the same number
of threads, so the comparison is exact up to float noise (rel 1e-6 is asked; equality is expected).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from quantgpt.cli import main
from quantgpt.training.interrupt import FAULT_ENV, SIGTERM_EXIT_CODE
from quantgpt.training.metrics import read_metrics
from training_helpers import lm_flags

STEPS = 8


def quantize_args(teacher: Path, shared_data: Path, run: Path, method: str) -> list[str]:
    return [
        "quantize", "--teacher", str(teacher), "--method", method, "--bits", "2-2-8",
        *lm_flags(shared_data), "--batch-size", "4", "--max-steps", str(STEPS), "--eval-every", "4",
        "--save-every", "3", "--keep-checkpoints", "2", "--log-every", "1", "--num-negatives", "8",
        "--output-dir", str(run),
    ]


def run_with_fault(args: list[str], fault: str) -> subprocess.CompletedProcess:
    env = {**os.environ, FAULT_ENV: fault, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    return subprocess.run(
        [sys.executable, "-m", "quantgpt.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def train_losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run) if r["kind"] == "train"}


def assert_same_result(resumed: Path, reference: Path) -> None:
    got = json.loads((resumed / "final_metrics.json").read_text())
    want = json.loads((reference / "final_metrics.json").read_text())
    assert got["final"]["perplexity"] == pytest.approx(want["final"]["perplexity"], rel=1e-6)
    assert got["best"]["step"] == want["best"]["step"]
    assert got["best"]["perplexity"] == pytest.approx(want["best"]["perplexity"], rel=1e-6)
    got_losses, want_losses = train_losses(resumed), train_losses(reference)
    assert sorted(got_losses) == list(range(1, STEPS + 1))
    for step in want_losses:
        assert got_losses[step] == pytest.approx(want_losses[step], rel=1e-6), step
    got_state = load_file(resumed / "checkpoints" / f"step-{STEPS}" / "model.safetensors")
    want_state = load_file(reference / "checkpoints" / f"step-{STEPS}" / "model.safetensors")
    assert got_state.keys() == want_state.keys()
    for key in want_state:  # weights, quantizer scales, distiller projections and memory banks
        torch.testing.assert_close(got_state[key], want_state[key], rtol=1e-6, atol=1e-7, msg=key)


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, shared_data, tiny_teacher):
    killed = tmp_path / "killed"
    process = run_with_fault(quantize_args(tiny_teacher, shared_data, killed, "quantgpt"), "7:KILL")
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    assert max(train_losses(killed)) == 7  # it got past the last checkpoint (step 6) before dying
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["step-3", "step-6"]
    assert not (killed / "final_metrics.json").exists()

    assert main([*quantize_args(tiny_teacher, shared_data, killed, "quantgpt"), "--resume"]) == 0
    events = [r for r in read_metrics(killed) if r["kind"] == "event"]
    assert events == [{"kind": "event", "step": 6, "event": "resumed", "checkpoint": "step-6"}]

    reference = tmp_path / "reference"
    assert main(quantize_args(tiny_teacher, shared_data, reference, "quantgpt")) == 0
    assert_same_result(killed, reference)
    bank = load_file(killed / "checkpoints" / f"step-{STEPS}" / "model.safetensors")
    assert bank["objective.distiller.student_bank.written"].any()


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_exits_143_and_resumes_exactly(tmp_path, shared_data, tiny_teacher):
    stopped = tmp_path / "stopped"
    process = run_with_fault(quantize_args(tiny_teacher, shared_data, stopped, "laq"), "4:TERM")
    assert process.returncode == SIGTERM_EXIT_CODE == 143
    assert "--resume" in process.stderr.strip().splitlines()[-1]
    assert sorted(p.name for p in (stopped / "checkpoints").iterdir()) == ["step-3", "step-4"]
    state = json.loads((stopped / "checkpoints" / "step-4" / "trainer_state.json").read_text())
    assert state["step"] == 4
    assert read_metrics(stopped)[-1]["event"] == "stopped on SIGTERM"

    assert main([*quantize_args(tiny_teacher, shared_data, stopped, "laq"), "--resume"]) == 0
    reference = tmp_path / "reference"
    assert main(quantize_args(tiny_teacher, shared_data, reference, "laq")) == 0
    assert_same_result(stopped, reference)


def test_resume_refuses_changed_settings(tmp_path, shared_data, tiny_teacher, capsys):
    run = tmp_path / "run"
    args = quantize_args(tiny_teacher, shared_data, run, "pact")
    args[args.index("--max-steps") + 1] = "1"
    assert main(args) == 0
    changed = [*args, "--resume", "--lr", "1e-4"]
    assert main(changed) == 2
    assert "training.learning_rate" in capsys.readouterr().err
    assert main(args) == 2  # the directory holds a run: --resume or another directory
    assert "already holds a run" in capsys.readouterr().err
