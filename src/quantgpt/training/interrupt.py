"""Stopping cleanly: SIGTERM asks the loop to checkpoint and stop; a fault hook for tests.

SIGTERM (what schedulers send before pre-empting a job) only sets a flag; the loop checks it after
each optimizer step, writes a checkpoint and raises `TrainingInterrupted`, and the command exits
with status 143 (128 + SIGTERM). `--resume` then continues.

`QUANTGPT_FAULT_AT_STEP="N:SIGNAL"` (e.g. "7:KILL", "5:TERM") makes the process send itself the
signal after step N; the tests use it to kill a run at a known step.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

FAULT_ENV = "QUANTGPT_FAULT_AT_STEP"
SIGTERM_EXIT_CODE = 128 + signal.SIGTERM


class TrainingInterrupted(RuntimeError):
    """The run stopped on a signal after writing a checkpoint; `--resume` continues it."""

    def __init__(self, step: int, checkpoint: str) -> None:
        super().__init__(f"stopped by SIGTERM after step {step}; checkpoint {checkpoint}; rerun with --resume to continue")
        self.step = step
        self.checkpoint = checkpoint


class StopRequest:
    """Installs a SIGTERM handler (main thread only) that sets `requested`; restores the old one on exit."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def fault_injection(step: int) -> None:
    """Send the signal named in QUANTGPT_FAULT_AT_STEP to this process when `step` is its step."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    at, _, name = spec.partition(":")
    if int(at) == step:
        os.kill(os.getpid(), getattr(signal, f"SIG{name or 'KILL'}"))
