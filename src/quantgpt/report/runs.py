"""Reading run directories written by the training loop: settings, metrics, the trained model.

A run directory holds `run_config.json` (the command and its settings; a quantization run names
its teacher), `metrics.jsonl` (one record a line, `kind` "train" / "eval" / "event"),
`final_metrics.json` and `best/` (the selected model with its tokenizer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn
from transformers import AutoModelForCausalLM

from ..quantizers import WEIGHT_QUANTIZERS
from ..serialization import load_quantized
from ..errors import MissingInputError
from ..model_files import check_model_dir, read_json_object
from ..training.metrics import METRICS_FILE, read_metrics_file

BEST_DIR = "best"


@dataclass
class RunInfo:
    """One run directory, read: `label` names it in figures ("quantgpt 2-2-8", "pact-weights 2-2-8"
    for a testbed variant, "full precision")."""

    path: Path
    command: str
    method: str | None
    bits: str | None
    teacher: Path | None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None

    @property
    def label(self) -> str:
        if self.method:
            return f"{self.variant or self.method} {self.bits}"
        if self.is_teacher:
            return f"full precision ({self.path.name})"
        return f"{self.command} ({self.path.name})"

    @property
    def is_quantized(self) -> bool:
        return self.method is not None

    @property
    def is_teacher(self) -> bool:
        """A full-precision fine-tuning (or pretraining) run: the teacher's."""
        return self.command == "finetune"

    @property
    def has_our_quantizers(self) -> bool:
        """A run of a registered method, loadable with `load_quantized`."""
        return self.method in WEIGHT_QUANTIZERS

    @property
    def model_dir(self) -> Path:
        return self.path / BEST_DIR


def read_run(run_dir: str | Path) -> RunInfo:
    """The settings and metrics of a run directory; FileNotFoundError names what is missing."""
    path = Path(run_dir)
    config_file = path / "run_config.json"
    if not config_file.is_file():
        raise MissingInputError(f"{path}: no run_config.json; pass a run directory written by quantgpt finetune/quantize")
    record = read_json_object(config_file)
    quantization = record.get("quantization") or {}
    teacher = record.get("teacher")
    final_file = path / "final_metrics.json"
    return RunInfo(
        path=path,
        command=str(record.get("command", "")),
        method=quantization.get("method"),
        bits=quantization.get("bits"),
        teacher=Path(teacher) if teacher else None,
        metrics=read_metrics_file(path / METRICS_FILE),
        final=read_json_object(final_file) if final_file.is_file() else {},
        variant=record.get("variant"),
    )


def load_run_model(run: RunInfo) -> nn.Module:
    """The run's selected model (`best/`) in eval mode: quantized runs through `load_quantized`."""
    if not (run.model_dir / "config.json").is_file():
        raise MissingInputError(f"{run.model_dir}: no saved model; did the run finish?")
    check_model_dir(run.model_dir)  # a damaged or pickled model: one line, nothing unpickled
    model = load_quantized(run.model_dir) if run.is_quantized else AutoModelForCausalLM.from_pretrained(run.model_dir, use_safetensors=True)
    return model.eval()


def load_full_precision(directory: str | Path) -> nn.Module:
    """A full-precision model from a `save_pretrained` directory, in eval mode."""
    check_model_dir(directory, "--teacher")
    return AutoModelForCausalLM.from_pretrained(str(directory), use_safetensors=True).eval()
