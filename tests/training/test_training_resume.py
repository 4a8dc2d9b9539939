"""Nothing lost: a run stopped (SIGTERM) or killed (SIGKILL) and resumed ends as an uninterrupted one.

The interrupted runs are subprocesses that signal themselves after a given step
(QUANTGPT_FAULT_AT_STEP); the last resume and the reference run are in-process with the same
number of threads, so the comparison is exact up to float noise (rel 1e-6 is asked; equality is
expected and observed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from quantgpt.cli import main
from quantgpt.training.interrupt import FAULT_ENV, SIGTERM_EXIT_CODE
from quantgpt.training.metrics import read_metrics
from training_helpers import lm_flags

STEPS = 6


def quantize_args(teacher: Path, shared_data: Path, run: Path, method: str) -> list[str]:
    return [
        "quantize", "--teacher", str(teacher), "--method", method, "--bits", "2-2-8",
        *lm_flags(shared_data), "--batch-size", "4", "--max-steps", str(STEPS), "--eval-every", "3",
        "--save-every", "2", "--keep-checkpoints", "2", "--log-every", "1",
        *(["--num-negatives", "8"] if method == "quantgpt" else []),  # a contrastive setting: quantgpt's loss only
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
def test_sigterm_then_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, shared_data, tiny_teacher):
    run = tmp_path / "interrupted"
    args = quantize_args(tiny_teacher, shared_data, run, "quantgpt")

    stopped = run_with_fault(args, "3:TERM")  # SIGTERM: checkpoint at once, exit 143
    assert stopped.returncode == SIGTERM_EXIT_CODE == 143, stopped.stderr[-2000:]
    assert "--resume" in stopped.stderr.strip().splitlines()[-1]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-2", "step-3"]
    assert json.loads((run / "checkpoints" / "step-3" / "trainer_state.json").read_text())["step"] == 3
    assert read_metrics(run)[-1] == {"kind": "event", "step": 3, "event": "stopped on SIGTERM", "checkpoint": "step-3"}

    killed = run_with_fault([*args, "--resume"], "5:KILL")  # SIGKILL after step 5; last checkpoint step 4
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert max(train_losses(run)) == 5
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-3", "step-4"]
    assert not (run / "final_metrics.json").exists()

    assert main([*args, "--resume"]) == 0
    events = [(r["step"], r["event"]) for r in read_metrics(run) if r["kind"] == "event"]
    assert events == [(3, "stopped on SIGTERM"), (3, "resumed"), (4, "resumed")]
    reference = tmp_path / "reference"
    assert main(quantize_args(tiny_teacher, shared_data, reference, "quantgpt")) == 0
    assert_same_result(run, reference)
    state = load_file(run / "checkpoints" / f"step-{STEPS}" / "model.safetensors")
    assert state["objective.distiller.student_bank.written"].any()


def test_laq_resumes_exactly_from_an_earlier_checkpoint(tmp_path, shared_data, tiny_teacher):
    """In-process: drop the last checkpoint of a finished run, as if it had died after step 4."""
    run = tmp_path / "run"
    args = quantize_args(tiny_teacher, shared_data, run, "laq")
    assert main(args) == 0
    finished = json.loads((run / "final_metrics.json").read_text())
    finished_state = load_file(run / "checkpoints" / f"step-{STEPS}" / "model.safetensors")
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "final_metrics.json").write_text(json.dumps(finished))
    (reference / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text())
    (reference / "checkpoints" / f"step-{STEPS}").mkdir(parents=True)
    save_file(finished_state, reference / "checkpoints" / f"step-{STEPS}" / "model.safetensors")

    shutil.rmtree(run / "checkpoints" / f"step-{STEPS}")
    (run / "final_metrics.json").unlink()
    assert main([*args, "--resume"]) == 0  # from step 4: LAQ's curvature comes back from Adam's state
    assert_same_result(run, reference)


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
