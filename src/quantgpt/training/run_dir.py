"""The run directory: checked before anything is written, created with its record, compared on resume.

A new run needs a new or empty directory; `--resume` needs one holding a quantgpt run whose
recorded settings (run_config.json) equal the new run's, up to the spelling of paths and the
settings that do not change a run's result.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..durable import recover_directory
from ..errors import InputFileError, MissingInputError, OutputPathError, UsageError
from ..jsonio import json_ready
from .checkpoints import BEST_DIR, CHECKPOINTS_DIR, write_json_atomic
from .metrics import FINAL_METRICS_FILE, METRICS_FILE
from .trackers import LOGS_DIR

RUN_CONFIG = "run_config.json"
# Settings that may change between a run and its resumption without changing its result; the
# output directory is the folder being resumed, however it is spelled or wherever it was moved.
RESUMABLE_CHANGES = ("resume", "progress", "num_workers", "output_dir", "report_to")
# Paths in a run record, compared resolved: `./runs/t` and `runs/t` are the same teacher.
RECORDED_PATHS = (("teacher",), ("model",), ("model_config",), ("task", "data_dir"))
# What a run directory holds (besides the temporary names starting with a dot).
RUN_ENTRIES = (RUN_CONFIG, METRICS_FILE, CHECKPOINTS_DIR, BEST_DIR, FINAL_METRICS_FILE, LOGS_DIR)


def _resolved(value: Any) -> Any:
    if isinstance(value, str) and value and os.path.exists(os.path.expanduser(value)):
        return os.path.realpath(os.path.expanduser(value))
    return value


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    record = json.loads(json.dumps(json_ready(record)))
    record.pop("environment", None)  # library versions may change between a run and its resumption
    for key in RESUMABLE_CHANGES:
        record.get("training", {}).pop(key, None)
    for *sections, key in RECORDED_PATHS:
        holder = record
        for section in sections:
            holder = holder.get(section) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and key in holder:
            holder[key] = _resolved(holder[key])
    return record


def _differing_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(
        f"{section}.{key}"
        for section in set(old) | set(new)
        for key in set(old.get(section) or {}) | set(new.get(section) or {})
        if isinstance(old.get(section), dict) and isinstance(new.get(section), dict)
        and old[section].get(key) != new[section].get(key)
    ) or sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))


def check_run_dir(run_dir: Path, resume: bool, run_record: dict[str, Any] | None = None) -> None:
    """Fail with one line, before anything is written, unless `run_dir` can take this run.

    A new run needs a new or empty directory (dot-files aside); `--resume` needs a directory
    holding a quantgpt run whose recorded settings equal `run_record`'s (when given), up to the
    spelling of paths and the settings in RESUMABLE_CHANGES.
    """
    run_dir = Path(run_dir)
    existing = next((path for path in (run_dir, *run_dir.parents) if path.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputPathError(f"--output-dir {run_dir}: {existing} is a file, not a directory; pass a new directory")
    config_file = run_dir / RUN_CONFIG
    if resume:
        if not run_dir.is_dir():
            raise MissingInputError(
                f"--resume: {run_dir} does not exist; pass the --output-dir of the run to continue, or drop --resume to start one"
            )
        if not config_file.is_file():
            raise InputFileError(
                f"--resume: {run_dir} holds no quantgpt run (no {RUN_CONFIG}); pass the --output-dir of the run to continue"
            )
        try:
            previous = json.loads(config_file.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputFileError(
                f"{config_file}: not valid JSON ({error}); the run record is damaged, start a new --output-dir"
            ) from None
        except OSError as error:
            raise InputFileError(f"--resume: {config_file}: cannot read it ({error.strerror or error})") from None
        if not isinstance(previous, dict):
            raise InputFileError(f"{config_file}: not a run record (a JSON object); start a new --output-dir")
        if run_record is not None and _comparable(previous) != _comparable(run_record):
            differing = _differing_settings(_comparable(previous), _comparable(run_record))
            raise UsageError(
                f"--resume with settings that differ from {config_file}: {', '.join(differing)}; "
                "resume with the same settings or start a new --output-dir"
            )
        return
    if not run_dir.is_dir():
        return
    try:
        entries = sorted(path.name for path in run_dir.iterdir() if not path.name.startswith("."))
    except OSError as error:
        raise OutputPathError(f"--output-dir {run_dir}: cannot list it ({error.strerror or error})") from None
    if any(name in RUN_ENTRIES for name in entries):
        raise OutputPathError(f"{run_dir} already holds a run: pass --resume to continue it or choose another --output-dir")
    if entries:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise OutputPathError(
            f"--output-dir {run_dir} holds files that are not a quantgpt run ({shown}); pick a new or empty directory"
        )


def create_run_dir(run_dir: Path, run_record: dict[str, Any], is_main: bool) -> None:
    """Create the run directory (checked by `check_run_dir`) and record its settings."""
    if is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            recover_directory(run_dir / BEST_DIR)
            write_json_atomic(run_dir / RUN_CONFIG, run_record)
        except OSError as error:  # not writable, or a path under a file
            raise OutputPathError(f"--output-dir {run_dir}: cannot write it ({error.strerror or error})") from None
