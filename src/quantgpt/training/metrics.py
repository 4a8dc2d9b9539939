"""What a run reports while it trains: a JSONL log of every metric and a progress bar.

`metrics.jsonl` holds one JSON object a line: `{"kind": "train", "step", "epoch", "loss", ...}`
every `log_every` steps, `{"kind": "eval", "step", "split", <metrics>}` after each evaluation and
`{"kind": "event", "step", "event": ...}` for resumes, interruptions and divergence. A non-finite
value is written as null (see `quantgpt.jsonio`). Only the main process writes; each line is
flushed at once so that a killed run keeps everything it logged.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import InputFileError
from ..jsonio import dumps_json
from .checkpoints import write_json_atomic

METRICS_FILE = "metrics.jsonl"
FINAL_METRICS_FILE = "final_metrics.json"


class MetricsLog:
    """Append-only JSONL metrics, written by the main process only."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        line = dumps_json(record)
        with open(self.path, "a") as handle:
            handle.write(line + "\n")
            handle.flush()

    def truncate_after(self, step: int) -> None:
        """Drop records of steps after `step`: a resumed run replays them (and logs them again)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [line for line, record in _metrics_lines(self.path) if (record.get("step") or 0) <= step]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)

    def sync(self) -> None:
        if self.enabled and self.path.is_file():
            with open(self.path, "rb") as handle:
                os.fsync(handle.fileno())


def _metrics_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Each line of a metrics.jsonl with its record. A last line that is not a JSON object was cut
    short by a kill while it was written and is dropped; any other is refused, naming the line."""
    try:
        lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
    except OSError as error:
        raise InputFileError(f"{path}: cannot read it ({error.strerror or error})") from None
    pairs = []
    for number, raw in enumerate(lines, 1):
        try:
            line = raw.decode("utf-8")
            record = json.loads(line)
        except ValueError:  # UnicodeDecodeError and JSONDecodeError
            record = None
        if not isinstance(record, dict):
            if number == len(lines):
                break
            raise InputFileError(
                f"{path}: line {number} is not JSON; repair or delete that line, or start a new --output-dir"
            )
        pairs.append((line, record))
    return pairs


def read_metrics_file(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl (none when there is no such file), a cut last line dropped."""
    path = Path(path)
    return [record for _, record in _metrics_lines(path)] if path.is_file() else []


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of a run's metrics.jsonl."""
    return read_metrics_file(Path(run_dir) / METRICS_FILE)


class Progress:
    """A tqdm bar over optimizer steps with loss, perplexity, tokens/s (ETA is tqdm's own)."""

    def __init__(self, total_steps: int, start_step: int, enabled: bool, description: str) -> None:
        self.bar = tqdm(total=total_steps, initial=start_step, disable=not enabled, desc=description, unit="step", dynamic_ncols=True)
        self.tokens = 0
        self.started = time.perf_counter()

    def step(self, tokens: int, postfix: dict[str, float]) -> float:
        """Advance one step; returns the tokens/s since the start (or the resume)."""
        self.tokens += tokens
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.tokens / elapsed
        self.bar.set_postfix({**{key: f"{value:.4g}" for key, value in postfix.items()}, "tok/s": f"{rate:.0f}"}, refresh=False)
        self.bar.update(1)
        return rate

    def close(self) -> None:
        self.bar.close()


def write_final_metrics(run_dir: Path, data: dict[str, Any]) -> None:
    write_json_atomic(Path(run_dir) / FINAL_METRICS_FILE, data)
