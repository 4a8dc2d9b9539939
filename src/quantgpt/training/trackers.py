"""Training curves in experiment trackers (TensorBoard, wandb, MLflow, Aim, ...) beside metrics.jsonl.

Through Accelerate's tracker API: the Accelerator is built with `log_with=config.report_to` and a
project directory in the run, `TrackedMetricsLog` starts the trackers at its first record and hands
every numeric value of a metrics.jsonl record to `accelerator.log` under `train/<name>` or
`<split>/<name>`, at the record's step. Trackers write under `RUN/logs/`: TensorBoard's event files
in `RUN/logs/quantgpt/`, wandb's (with WANDB_MODE=offline, no account needed) in `RUN/logs/wandb/`,
MLflow's file store in `RUN/logs/mlruns/`, Aim's repository in `RUN/logs/.aim/`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import LoggerType, ProjectConfiguration

from ..errors import UsageError
from ..validators import is_number
from .metrics import MetricsLog

PROJECT = "quantgpt"
LOGS_DIR = "logs"
# What to install for each tracker Accelerate can drive.
TRACKER_PACKAGES = {
    "tensorboard": "tensorboard (pip install 'quantgpt[tensorboard]')",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "aim": "aim",
    "comet_ml": "comet-ml",
    "clearml": "clearml",
    "dvclive": "dvclive",
    "swanlab": "swanlab",
    "trackio": "trackio",
}


def check_report_to(report_to: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The trackers named, each one Accelerate supports and installed here; else a UsageError."""
    from accelerate.tracking import get_available_trackers

    names = tuple(report_to)
    known = [member.value for member in LoggerType if member.value != "all"]
    available = {str(getattr(tracker, "value", tracker)) for tracker in get_available_trackers()}
    for name in names:
        if name not in known:
            raise UsageError(f"--report-to {name}: allowed are {', '.join(known)}")
        if name not in available:
            raise UsageError(f"--report-to {name}: not installed; install {TRACKER_PACKAGES.get(name, name)}")
    return names


def tracker_accelerator_kwargs(report_to: tuple[str, ...], run_dir: str | Path) -> dict[str, Any]:
    """Accelerator(...) arguments that send `accelerator.log` to the trackers (none: no tracker)."""
    if not report_to:
        return {}
    run_dir = Path(run_dir)
    return {
        "log_with": list(report_to),
        "project_config": ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / LOGS_DIR)),
    }


def _flat_config(record: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """The run record as one level of scalars ("training/learning_rate"), as TensorBoard's hparams take it."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat_config(value, f"{name}/"))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def tracker_values(record: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics.jsonl record, named `train/<key>` or `<split>/<key>`."""
    kind = record.get("kind")
    if kind == "train":
        section = "train"
    elif kind == "eval":
        section = str(record.get("split", "eval")) + ("/best" if record.get("model") else "")
    else:
        return {}
    return {
        f"{section}/{key}": float(value)
        for key, value in record.items()
        if key not in ("kind", "step", "split", "model")
        and is_number(value) and math.isfinite(value)
    }


class TrackedMetricsLog(MetricsLog):
    """metrics.jsonl, and the same numbers in the Accelerator's trackers (when it has any)."""

    def __init__(self, run_dir: Path, enabled: bool, accelerator: Accelerator, run_record: dict[str, Any]) -> None:
        super().__init__(run_dir, enabled)
        self.accelerator = accelerator
        self.run_record = run_record
        self.run_name = Path(run_dir).resolve().name
        self.started = False

    def _start(self) -> None:
        logs = str(Path(self.path).parent / LOGS_DIR)
        self.accelerator.init_trackers(
            PROJECT,
            config=_flat_config(self.run_record),
            init_kwargs={
                "wandb": {"name": self.run_name, "dir": logs},
                "mlflow": {"logging_dir": str(Path(logs) / "mlruns"), "run_name": self.run_name},
            },
        )
        self.started = True

    def write(self, record: dict[str, Any]) -> None:
        super().write(record)
        if not self.accelerator.log_with:
            return
        values = tracker_values(record)
        if values:
            if not self.started:
                self._start()
            self.accelerator.log(values, step=int(record["step"]))

    def close(self) -> None:
        """Flush and close the trackers (the run's end).

        Not `accelerator.end_training()`: that also destroys the process group, which the rest of
        the run (and the next run of `quantgpt run`) still uses.
        """
        if self.started:
            for tracker in self.accelerator.trackers:
                tracker.finish()
            self.accelerator.trackers = []
            self.started = False
