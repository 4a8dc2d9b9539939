"""Settings of one training run (fine-tuning or quantization-aware training), validated when built.

Defaults follow SPEC section 7 (language modelling) where the paper states a value; the rest are
marked as choices. `batch_size` is the **global** batch of one optimizer step (the paper's 32 on 8
GPUs): each process reads `batch_size / (processes * gradient_accumulation_steps)` examples per
micro-step, so a run gives the same updates on any number of processes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from .trackers import check_report_to

MIXED_PRECISION = ("no", "fp16", "bf16")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class TrainingConfig:
    """How the one training loop runs (SPEC section 7; choices marked).

    output_dir: the run directory (run_config.json, metrics.jsonl, checkpoints/, best/, final_metrics.json);
        a new run needs a new or empty directory.
    learning_rate / quantizer_learning_rate: AdamW learning rates of the backbone (and the contrastive
        projections) and of the learned quantizer parameters (gamma, PACT's factors, LSQ's step);
        both decay linearly to 0 after `warmup_steps` (paper: 5e-4 / 1e-3, no warm-up stated).
    weight_decay: AdamW decay of the backbone group (choice: 0; the quantizer group never decays).
    batch_size: global examples per optimizer step; gradient_accumulation_steps splits it in time.
    num_epochs / max_steps: length of the run; max_steps (when set) wins. max_steps=0 only evaluates.
    max_grad_norm: clip the global gradient norm (choice: 1.0; 0 disables).
    eval_every / save_every: evaluate / checkpoint every N optimizer steps (0: only at the end).
    keep_checkpoints: how many of the latest checkpoints stay on disk.
    log_every: write a train record to metrics.jsonl every N steps.
    eval_split: split the best checkpoint is chosen on; test_split: evaluated with the best model at the end.
    report_to: experiment trackers that also get every metric (Accelerate's: "tensorboard", "wandb",
        "mlflow", "aim", ...), writing under output_dir/logs (see training/trackers.py); () for none.
    resume: continue the run in output_dir from its latest checkpoint (from step 0 when it has none
        yet); an error when output_dir holds no run or its latest checkpoint is damaged.
    """

    output_dir: str
    learning_rate: float = 5e-4
    quantizer_learning_rate: float = 1e-3
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    warmup_steps: int = 0
    batch_size: int = 32
    gradient_accumulation_steps: int = 1
    num_epochs: int = 1
    max_steps: int | None = None
    max_grad_norm: float = 1.0
    seed: int = 42
    eval_every: int = 500
    save_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    eval_split: str = "valid"
    test_split: str | None = None
    mixed_precision: str = "no"
    num_workers: int = 0
    ddp_find_unused_parameters: bool = False
    report_to: tuple[str, ...] = ()
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.output_dir, str) or not self.output_dir:
            raise UsageError(f"TrainingConfig.output_dir={self.output_dir!r}: allowed is a non-empty path")
        for name in ("learning_rate", "quantizer_learning_rate"):
            value = getattr(self, name)
            if not _is_number(value) or not value > 0:
                raise UsageError(f"TrainingConfig.{name}={value!r}: allowed is a number > 0")
        for name in ("weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise UsageError(f"TrainingConfig.{name}={value!r}: allowed is a number >= 0")
        for name in ("adam_beta1", "adam_beta2"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < 1:
                raise UsageError(f"TrainingConfig.{name}={value!r}: allowed is a number in [0, 1)")
        if not _is_number(self.adam_epsilon) or not self.adam_epsilon > 0:
            raise UsageError(f"TrainingConfig.adam_epsilon={self.adam_epsilon!r}: allowed is a number > 0")
        for name in ("batch_size", "gradient_accumulation_steps", "num_epochs", "keep_checkpoints", "log_every"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise UsageError(f"TrainingConfig.{name}={value!r}: allowed is an integer >= 1")
        for name in ("warmup_steps", "eval_every", "save_every", "num_workers", "seed"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise UsageError(f"TrainingConfig.{name}={value!r}: allowed is an integer >= 0")
        if self.max_steps is not None and (not _is_int(self.max_steps) or self.max_steps < 0):
            raise UsageError(f"TrainingConfig.max_steps={self.max_steps!r}: allowed is None or an integer >= 0")
        if self.batch_size % self.gradient_accumulation_steps:
            raise UsageError(
                f"TrainingConfig.batch_size={self.batch_size} is not divisible by "
                f"gradient_accumulation_steps={self.gradient_accumulation_steps}: allowed is a multiple of it"
            )
        if self.mixed_precision not in MIXED_PRECISION:
            raise UsageError(
                f"TrainingConfig.mixed_precision={self.mixed_precision!r}: allowed are {', '.join(MIXED_PRECISION)}"
            )
        if not isinstance(self.eval_split, str) or not self.eval_split:
            raise UsageError(f"TrainingConfig.eval_split={self.eval_split!r}: allowed is a split name")
        if self.test_split is not None and (not isinstance(self.test_split, str) or not self.test_split):
            raise UsageError(f"TrainingConfig.test_split={self.test_split!r}: allowed is None or a split name")
        if isinstance(self.report_to, str):
            self.report_to = (self.report_to,)
        self.report_to = check_report_to(self.report_to)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def micro_batch_size(self, num_processes: int) -> int:
        """Examples one process reads per micro-step; the global batch must split evenly."""
        parts = num_processes * self.gradient_accumulation_steps
        if self.batch_size % parts:
            raise UsageError(
                f"batch_size={self.batch_size} does not split over {num_processes} processes x "
                f"{self.gradient_accumulation_steps} accumulation steps: allowed is a multiple of {parts}"
            )
        return self.batch_size // parts
