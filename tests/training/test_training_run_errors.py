"""Run folders in the wrong state, damaged checkpoints and diverging runs, through the command line.

Each failure exits 2 with one line `quantgpt: error: ...` (no traceback) and leaves the disk as it
was: no half-made run folder, no file of an existing run changed, never a pickle loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from bad_input_helpers import forbid_unpickling, plant_pickles, snapshot, truncate
from safetensors.torch import load_file, save_file
from training_helpers import lm_flags

from quantgpt.cli import main
from quantgpt.training.metrics import read_metrics

pytestmark = pytest.mark.slow


def finetune_args(shared_data: Path, tokenizer_dir: Path, run: Path | str, *extra: str) -> list[str]:
    return [
        "finetune", "--model-config", "tiny", "--tokenizer", str(tokenizer_dir),
        *lm_flags(shared_data, train_blocks=16, eval_blocks=2), "--batch-size", "2", "--max-steps", "3",
        "--eval-every", "1", "--save-every", "1", "--log-every", "1", "--keep-checkpoints", "3",
        "--output-dir", str(run), *extra,
    ]


def assert_clean_error(code: int, capsys, *fragments: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("quantgpt: error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity (which Python writes but JSON does not have)."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"non-JSON constant {name}"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, shared_data, tokenizer_dir) -> Path:
    """A tiny 3-step fine-tuning run with checkpoints at steps 1, 2 and 3."""
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(finetune_args(shared_data, tokenizer_dir, run)) == 0
    return run


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A copy of the finished run without its last checkpoint, as if killed after step 2."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    shutil.rmtree(run / "checkpoints" / "step-3")
    (run / "final_metrics.json").unlink()
    return run


def test_resume_never_unpickles_a_planted_file(run_copy, shared_data, tokenizer_dir, tmp_path, monkeypatch):
    forbid_unpickling(monkeypatch)
    marker = tmp_path / "unpickled"
    plant_pickles(run_copy / "checkpoints" / "step-2", marker)
    code = main(finetune_args(shared_data, tokenizer_dir, run_copy, "--resume"))
    assert not marker.exists()
    assert code == 0
    assert (run_copy / "final_metrics.json").is_file()


def test_resume_of_a_missing_directory_is_an_error(tmp_path, shared_data, tokenizer_dir, capsys):
    run = tmp_path / "nothing-here"
    code = main(finetune_args(shared_data, tokenizer_dir, run, "--resume"))
    assert_clean_error(code, capsys, str(run), "--resume")
    assert not run.exists()


def test_resume_of_a_folder_that_is_not_a_run_is_an_error(tmp_path, shared_data, tokenizer_dir, capsys):
    run = tmp_path / "other"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    code = main(finetune_args(shared_data, tokenizer_dir, run, "--resume"))
    assert_clean_error(code, capsys, str(run))
    assert snapshot(run) == {str(run / "notes.txt"): hashlib.sha256(b"mine").hexdigest()}


def test_resume_accepts_the_same_folders_spelled_differently(run_copy, shared_data, tokenizer_dir, monkeypatch):
    monkeypatch.chdir(run_copy.parent)
    args = finetune_args(Path(f"{shared_data}/."), tokenizer_dir, "./run/", "--resume")
    assert main(args) == 0
    assert [r["event"] for r in read_metrics(run_copy) if r["kind"] == "event"] == ["resumed"]


def edit_json(path: Path, **fields) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def wrong_rng_dtype(path: Path) -> None:
    tensors = load_file(path)
    save_file({**tensors, "torch": tensors["torch"].to(torch.int32)}, path)


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("model.safetensors", truncate),
        ("rng-0.safetensors", wrong_rng_dtype),
        ("trainer_state.json", lambda path: path.write_text("{not json")),
        ("trainer_state.json", lambda path: edit_json(path, best_metric="low")),
        ("trainer_state.json", lambda path: edit_json(path, best_metrics=[1.0])),
    ],
    ids=["model", "rng", "state-json", "state-metric-string", "state-metrics-list"],
)
def test_resume_from_a_damaged_checkpoint_is_an_error_naming_the_file(run_copy, shared_data, tokenizer_dir, capsys, name, damage):
    damage(run_copy / "checkpoints" / "step-2" / name)
    before = snapshot(run_copy)
    code = main(finetune_args(shared_data, tokenizer_dir, run_copy, "--resume"))
    assert_clean_error(code, capsys, str(run_copy / "checkpoints" / "step-2" / name))
    assert snapshot(run_copy) == before


def test_output_dir_that_is_a_file_is_an_error(tmp_path, shared_data, tokenizer_dir, capsys):
    target = tmp_path / "file"
    target.write_text("keep me")
    code = main(finetune_args(shared_data, tokenizer_dir, target))
    assert_clean_error(code, capsys, str(target))
    assert target.read_text() == "keep me"


def test_output_dir_holding_unrelated_files_is_an_error(tmp_path, shared_data, tokenizer_dir, capsys):
    target = tmp_path / "mine"
    (target / "src").mkdir(parents=True)
    (target / "thesis.tex").write_text("chapter 1")
    before = snapshot(target)
    code = main(finetune_args(shared_data, tokenizer_dir, target))
    assert_clean_error(code, capsys, str(target), "empty")
    assert snapshot(target) == before and sorted(p.name for p in target.iterdir()) == ["src", "thesis.tex"]


def test_a_missing_test_split_fails_before_the_run_folder(tmp_path, shared_data, tokenizer_dir, capsys):
    run = tmp_path / "run"
    code = main(finetune_args(shared_data, tokenizer_dir, run, "--test-split", "no-such-split"))
    assert_clean_error(code, capsys, "no-such-split")
    assert not run.exists()


def test_an_unwritable_output_dir_is_an_error(tmp_path, shared_data, tokenizer_dir, capsys, monkeypatch):
    run = tmp_path / "run"
    real_mkdir = Path.mkdir

    def refuse(path, *args, **kwargs):
        if path == run:
            raise PermissionError(13, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    code = main(finetune_args(shared_data, tokenizer_dir, run))
    assert_clean_error(code, capsys, str(run), "Permission denied")
    assert not run.exists()


def test_block_size_beyond_the_model_positions_fails_before_the_run_folder(tmp_path, shared_data, tokenizer_dir, capsys):
    run = tmp_path / "run"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "gpt2", "n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 16}))
    args = finetune_args(shared_data, tokenizer_dir, run)
    args[args.index("--model-config") + 1] = str(config)
    code = main(args)
    assert_clean_error(code, capsys, "32", "16", "--block-size")
    assert not run.exists()


def test_a_diverging_run_stops_keeps_the_last_good_state_and_writes_only_json(tmp_path, shared_data, tokenizer_dir, capsys):
    run = tmp_path / "run"
    # Warm-up: step 1 trains at lr 0 (a good step-1 checkpoint and best model), step 2 at 5e8.
    code = main(finetune_args(shared_data, tokenizer_dir, run, "--lr", "1e9", "--warmup-steps", "2"))
    line = assert_clean_error(code, capsys, "diverged at step 2", "lower", "--lr")
    assert "step-1" in line
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-1"]
    assert strict_json((run / "checkpoints" / "step-1" / "trainer_state.json").read_text())["best_step"] == 1
    best = load_file(run / "best" / "model.safetensors")
    assert all(torch.isfinite(tensor).all() for tensor in best.values())
    assert not (run / "final_metrics.json").exists()
    strict_json((run / "run_config.json").read_text())
    records = [strict_json(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["kind"] == "event" and records[-1]["event"] == "diverged" and records[-1]["step"] == 2
    assert records[-1]["perplexity"] is None


def test_a_non_finite_training_loss_stops_the_run(tmp_path, shared_data, tokenizer_dir, capsys):
    run = tmp_path / "run"
    args = finetune_args(shared_data, tokenizer_dir, run, "--lr", "1e9", "--warmup-steps", "2", "--max-steps", "5")
    args[args.index("--eval-every") + 1] = "0"  # no evaluation to notice it first
    code = main(args)
    line = assert_clean_error(code, capsys, "diverged at step 3", "training loss is nan", "step-2")
    assert "best/" not in line  # nothing was evaluated, so there is no best model
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-1", "step-2"]
    assert not (run / "best").exists() and not (run / "final_metrics.json").exists()
    records = [strict_json(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1] == {"kind": "event", "step": 3, "event": "diverged", "loss": None}
    assert max(r["step"] for r in records if r["kind"] == "train") == 2


def test_evaluate_json_writes_null_for_a_non_finite_metric(finished_run, tmp_path, shared_data, capsys):
    model = tmp_path / "broken"
    shutil.copytree(finished_run / "best", model)
    weights = load_file(model / "model.safetensors")
    save_file({key: torch.full_like(value, math.nan) for key, value in weights.items()}, model / "model.safetensors", {"format": "pt"})
    capsys.readouterr()
    flags = ["--task", "lm", "--dataset", "wikitext-2", "--data-dir", str(shared_data), "--block-size", "32", "--max-eval-blocks", "2"]
    assert main(["evaluate", str(model), *flags, "--split", "testbed-select", "--json"]) == 0
    result = strict_json(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["perplexity"] is None and result["loss"] is None
