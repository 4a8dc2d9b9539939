"""Checkpoints that survive a kill at any moment: written to a temporary directory, synced, renamed.

A directory `checkpoints/step-N/` exists only complete: it is written as `checkpoints/.tmp-step-N/`
(Accelerate's `save_state`: model and distiller, optimizer, scheduler, each process's RNG states;
plus `trainer_state.json`: step, best metric), fsynced, then renamed in one `os.replace`. The
best model (`best/`, a `save_pretrained` directory with the tokenizer) is replaced the same way.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from transformers.utils import logging as transformers_logging

CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
TRAINER_STATE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


@contextmanager
def quiet_saving() -> Iterator[None]:
    """Silence two expected messages while saving: Accelerate's note that the tied LM head was
    stored once (loading ties it again), and Transformers' per-shard progress bar."""
    accelerate_logger = logging.getLogger("accelerate.utils.other")
    level = accelerate_logger.level
    bars = transformers_logging.is_progress_bar_enabled()
    accelerate_logger.setLevel(logging.ERROR)
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        accelerate_logger.setLevel(level)
        if bars:
            transformers_logging.enable_progress_bar()


def fsync_tree(path: Path) -> None:
    """Flush every file under `path`, then the directories, to disk (a rename is only as durable
    as the data it points to)."""
    for directory, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(directory, name), "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(Path(directory))


def fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to `path` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def replace_directory(tmp: Path, final: Path) -> None:
    """Put the complete directory `tmp` at `final`, replacing what was there.

    POSIX renames a directory onto an existing one only when that one is empty, so the old one is
    first moved aside (`.old-<name>`) and removed after; `recover_directory` undoes a crash between.
    """
    fsync_tree(tmp)
    old = final.with_name(f".old-{final.name}")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    if old.exists():
        shutil.rmtree(old)


def recover_directory(final: Path) -> None:
    """After a crash inside `replace_directory`: bring the moved-aside copy back if `final` is gone."""
    old = final.with_name(f".old-{final.name}")
    if old.exists() and not final.exists():
        os.replace(old, final)


class CheckpointManager:
    """Saves, finds, loads and prunes `run_dir/checkpoints/step-N/` through an Accelerator.

    `save` and `load` are collective: every process calls them (each saves and restores its own RNG
    states); files other than the RNG states are written by the main process.
    """

    def __init__(self, run_dir: Path, keep: int, accelerator: Any) -> None:
        self.root = Path(run_dir) / CHECKPOINTS_DIR
        self.keep = keep
        self.accelerator = accelerator

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            match = _STEP_DIR.match(path.name)
            if match and path.is_dir() and (path / TRAINER_STATE).is_file():
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest(self) -> Path | None:
        found = self.checkpoints()
        return found[-1][1] if found else None

    def save(self, step: int, trainer_state: dict[str, Any]) -> Path:
        accelerator = self.accelerator
        final = self.root / f"step-{step}"
        tmp = self.root / f".tmp-step-{step}"
        if accelerator.is_main_process:
            self.root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():  # left by a crash during an earlier save
                shutil.rmtree(tmp)
        accelerator.wait_for_everyone()
        with quiet_saving():
            accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            with open(tmp / TRAINER_STATE, "w") as handle:
                json.dump(trainer_state, handle, indent=2, sort_keys=True)
            replace_directory(tmp, final)
            self._prune()
        accelerator.wait_for_everyone()
        return final

    def load(self, path: Path) -> dict[str, Any]:
        """Restore everything `save` wrote; returns the trainer state."""
        self.accelerator.load_state(str(path))
        return json.loads((path / TRAINER_STATE).read_text())

    def _prune(self) -> None:
        for _, path in self.checkpoints()[: -self.keep]:
            shutil.rmtree(path)
        for path in self.root.glob(".tmp-step-*"):
            shutil.rmtree(path, ignore_errors=True)
