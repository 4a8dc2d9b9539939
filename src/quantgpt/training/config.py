"""Settings of one training run (fine-tuning or quantization-aware training), validated when built.

Defaults follow docs/method.md#tasks-and-training-settings (language modelling) where the paper states a value; the rest are
marked as choices. `batch_size` is the **global** batch of one optimizer step (the paper's 32 on 8
GPUs): each process reads `batch_size / (processes * gradient_accumulation_steps)` examples per
micro-step, so a run gives the same updates on any number of processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..settings import setting, to_dict, validate
from ..validators import boolean, integer, number, one_of, optional, path, strings, text
from .trackers import check_report_to

MIXED_PRECISION = ("no", "fp16", "bf16")


@dataclass(frozen=True)
class TrainingConfig:
    """How the one training loop runs (docs/method.md#tasks-and-training-settings; choices marked).

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

    output_dir: str = setting(check=path(), help="run directory (checkpoints, metrics.jsonl, best/, ...)")
    learning_rate: float = setting(5e-4, number(above=0), "backbone learning rate", flags=("--lr",))
    quantizer_learning_rate: float = setting(
        1e-3, number(above=0), "learning rate of quantizer parameters", flags=("--quantizer-lr",)
    )
    weight_decay: float = setting(0.0, number(0), "AdamW weight decay of the backbone")
    adam_beta1: float = setting(0.9, number(0, below=1), "AdamW beta1")
    adam_beta2: float = setting(0.999, number(0, below=1), "AdamW beta2")
    adam_epsilon: float = setting(1e-8, number(above=0), "AdamW epsilon")
    warmup_steps: int = setting(0, integer(0), "linear warm-up steps before the linear decay to 0")
    batch_size: int = setting(32, integer(1), "global batch per optimizer step")
    gradient_accumulation_steps: int = setting(1, integer(1), "micro-steps per optimizer step")
    num_epochs: int = setting(1, integer(1), "training epochs", flags=("--epochs",))
    max_steps: int | None = setting(None, optional(integer(0)), "optimizer steps (overrides --num-epochs; 0 only evaluates)")
    max_grad_norm: float = setting(1.0, number(0), "gradient clipping norm (0 disables)")
    seed: int = setting(42, integer(0), "random seed")
    eval_every: int = setting(500, integer(0), "evaluate every N steps and at the end (0: end only)")
    save_every: int = setting(500, integer(0), "checkpoint every N steps and at the end (0: end only)")
    keep_checkpoints: int = setting(2, integer(1), "how many latest checkpoints to keep")
    log_every: int = setting(10, integer(1), "write train metrics every N steps")
    eval_split: str = setting("valid", text(), "split that picks the best model")
    test_split: str | None = setting(None, optional(text()), "split evaluated with the best model at the end")
    mixed_precision: str = setting("no", one_of(MIXED_PRECISION), "autocast precision")
    num_workers: int = setting(0, integer(0), "DataLoader worker processes")
    ddp_find_unused_parameters: bool = setting(False, boolean(), "DDP's find_unused_parameters (multi-process runs)")
    report_to: tuple[str, ...] = setting(
        (), strings(), "also log every metric to these trackers (tensorboard, wandb, mlflow, aim, ...), under OUTPUT_DIR/logs"
    )
    resume: bool = setting(False, boolean(), "continue from the latest checkpoint in --output-dir")
    progress: bool = setting(True, boolean(), "progress bar")

    def __post_init__(self) -> None:
        validate(self)
        if self.batch_size % self.gradient_accumulation_steps:
            raise UsageError(
                f"TrainingConfig.batch_size={self.batch_size} is not divisible by "
                f"gradient_accumulation_steps={self.gradient_accumulation_steps}: allowed is a multiple of it"
            )
        object.__setattr__(self, "report_to", check_report_to(self.report_to))

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (the `training` section of run_config.json)."""
        return to_dict(self)

    def micro_batch_size(self, num_processes: int) -> int:
        """Examples one process reads per micro-step; the global batch must split evenly."""
        parts = num_processes * self.gradient_accumulation_steps
        if self.batch_size % parts:
            raise UsageError(
                f"batch_size={self.batch_size} does not split over {num_processes} processes x "
                f"{self.gradient_accumulation_steps} accumulation steps: allowed is a multiple of {parts}"
            )
        return self.batch_size // parts
