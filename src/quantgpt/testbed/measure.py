"""What the grid reports besides perplexity: wall time, peak memory, training step time.

Step time is read from the loop's own metrics.jsonl, so nothing is timed twice: a train record
holds `tokens_per_s` since the run started, so `step * tokens_per_step / tokens_per_s` is the
time at that step. Only records logged before the first evaluation are used (an evaluation's time
would count as training), and the first one is the origin, so start-up (loading, first-step
allocations, LAQ's first solve) is left out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import psutil

T = TypeVar("T")
SAMPLE_SECONDS = 0.05
MIB = 2**20


def seconds_per_step(records: Iterable[Mapping[str, Any]], tokens_per_step: int) -> float | None:
    """Mean seconds per optimizer step between the first train record and the last one before the
    first evaluation; None when fewer than two such records exist."""
    records = list(records)
    first_eval = min((r["step"] for r in records if r.get("kind") == "eval"), default=float("inf"))
    train = [r for r in records if r.get("kind") == "train" and r["step"] <= first_eval and r.get("tokens_per_s")]
    if len(train) < 2:
        return None
    first, last = train[0], train[-1]
    elapsed = tokens_per_step * (last["step"] / last["tokens_per_s"] - first["step"] / first["tokens_per_s"])
    return elapsed / (last["step"] - first["step"])


@dataclass
class Measured:
    """A call's result with its wall time and the process's peak resident memory while it ran."""

    value: Any
    wall_seconds: float
    peak_rss_mib: float


def measure(call: Callable[[], T]) -> Measured:
    """Runs `call()`, sampling the process's resident set size every 50 ms in a thread.

    The peak is of the whole process (model, teacher, data, optimizer state), so it compares
    methods run one after the other in one process; large tensors are freed back to the system
    (they are allocated with mmap), so one run's peak does not carry over to the next.
    """
    process = psutil.Process()
    peak = process.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(SAMPLE_SECONDS):
            peak = max(peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        value = call()
    finally:
        done.set()
        sampler.join()
    peak = max(peak, process.memory_info().rss)
    return Measured(value, time.perf_counter() - started, peak / MIB)
