"""The same loop on two CPU processes (gloo) as on one, for the same global batch of 4 blocks.

Both runs see the same examples at every step (the global batch is split over the processes);
all-reduced gradients are summed in another order, so float rounding differs. Stated tolerances:

- logit distillation (PACT): every step's loss and the final evaluation loss within 1e-5 relative.
- QuantGPT: memory banks bit-identical on both processes and equal to the one-process run's
  within 1e-5; every step's logit, task and contrastive loss and the final evaluation loss within
  1e-5 relative (the distiller gathers ids and representations once, before its first-step fill and
  its Eq. 3 update, so two processes read the same keys as one).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import two_process_run
from quantgpt.training.metrics import read_metrics

SCRIPT = Path(two_process_run.__file__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_records(run: Path) -> list[dict]:
    return [r for r in read_metrics(run) if r["kind"] == "train"]


def final_eval(run: Path) -> dict:
    return json.loads((run / "final_metrics.json").read_text())["final"]


@pytest.mark.slow
def test_two_processes_match_one_and_keep_identical_banks(tmp_path, shared_data, tiny_teacher_no_dropout):
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    assert launcher, "the accelerate launcher is installed with accelerate"
    two = tmp_path / "two"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    command = [
        launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        str(SCRIPT), str(tiny_teacher_no_dropout), str(shared_data), str(two),
    ]
    process = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    # Each process checkpoints its own generator states; the rest is written once.
    checkpoint = sorted(p.name for p in (two / "logit" / "checkpoints" / f"step-{two_process_run.STEPS}").iterdir())
    assert [name for name in checkpoint if name.startswith("rng-")] == ["rng-0.json", "rng-0.safetensors", "rng-1.json", "rng-1.safetensors"]
    one = tmp_path / "one"
    two_process_run.run(str(tiny_teacher_no_dropout), str(shared_data), str(one))

    # Logit distillation: the loop gives the same updates on two processes as on one.
    for got, want in zip(train_records(two / "logit"), train_records(one / "logit"), strict=True):
        assert got["step"] == want["step"]
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
    assert final_eval(two / "logit")["tokens"] == final_eval(one / "logit")["tokens"]  # sharded eval scores each token once
    assert final_eval(two / "logit")["loss"] == pytest.approx(final_eval(one / "logit")["loss"], rel=1e-5)

    # QuantGPT: banks identical on every process, close to the one-process run.
    rank0, rank1 = (load_file(two / "contrastive" / f"banks-rank{i}.safetensors") for i in (0, 1))
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    single = load_file(one / "contrastive" / "banks-rank0.safetensors")
    assert torch.equal(rank0["written"], single["written"])
    assert int(single["written"].sum()) > 100
    for bank in ("student_bank", "teacher_bank"):
        torch.testing.assert_close(rank0[bank], single[bank], rtol=1e-5, atol=1e-6)
    for got, want in zip(train_records(two / "contrastive"), train_records(one / "contrastive"), strict=True):
        assert got["logit_loss"] == pytest.approx(want["logit_loss"], rel=1e-5)
        assert got["task_loss"] == pytest.approx(want["task_loss"], rel=1e-5)
        assert got["contrastive_loss"] == pytest.approx(want["contrastive_loss"], rel=1e-5)
    assert final_eval(two / "contrastive")["loss"] == pytest.approx(final_eval(one / "contrastive")["loss"], rel=1e-5)
