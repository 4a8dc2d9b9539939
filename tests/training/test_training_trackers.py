"""--report-to: the metrics of metrics.jsonl also reach Accelerate's trackers (TensorBoard here)."""

from __future__ import annotations

import pytest

from quantgpt.cli import main
from quantgpt.errors import UsageError
from quantgpt.training.config import TrainingConfig
from quantgpt.training.metrics import read_metrics
from quantgpt.training.trackers import tracker_values

from training_helpers import lm_flags


def test_records_become_named_scalars():
    assert tracker_values({"kind": "train", "step": 3, "epoch": 0.5, "loss": 2.5, "lr": 1e-3, "grad_norm": float("nan")}) == {
        "train/epoch": 0.5, "train/loss": 2.5, "train/lr": 1e-3,
    }
    assert tracker_values({"kind": "eval", "step": 4, "split": "valid", "perplexity": 9.0, "tokens": 10}) == {
        "valid/perplexity": 9.0, "valid/tokens": 10.0,
    }
    assert tracker_values({"kind": "event", "step": 4, "event": "resumed"}) == {}


def test_an_unknown_tracker_is_named():
    with pytest.raises(UsageError, match="--report-to tensorbored: allowed are .*tensorboard"):
        TrainingConfig(output_dir="x", report_to=("tensorbored",))


@pytest.mark.slow
def test_a_tiny_run_writes_tensorboard_events_with_the_loss(tmp_path, shared_data, tiny_teacher):
    pytest.importorskip("tensorboard", reason="the tensorboard extra: pip install -e '.[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    code = main([
        "quantize", "--teacher", str(tiny_teacher), "--method", "quantgpt", "--bits", "2-2-8",
        *lm_flags(shared_data, train_blocks=8, eval_blocks=2), "--batch-size", "4", "--max-steps", "2",
        "--log-every", "1", "--eval-every", "2", "--num-negatives", "4", "--report-to", "tensorboard",
        "--output-dir", str(run),
    ])
    assert code == 0
    event_files = list((run / "logs" / "quantgpt").glob("events.out.tfevents.*"))
    assert event_files
    events = EventAccumulator(str(event_files[0].parent)).Reload()
    logged = {record["step"]: record for record in read_metrics(run) if record["kind"] == "train"}
    losses = {event.step: event.value for event in events.Scalars("train/loss")}
    assert losses == pytest.approx({step: record["loss"] for step, record in logged.items()}, rel=1e-6)
    assert [event.step for event in events.Scalars("testbed-select/perplexity")] == [2]
