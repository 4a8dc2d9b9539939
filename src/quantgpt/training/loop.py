"""The one training loop, on Accelerate: teacher fine-tuning and quantization-aware training alike.

Read top to bottom, `train` does: check every setting and the run directory (nothing is written
until all checks pass), build optimizer and schedule, resume from the latest checkpoint if asked,
then for each optimizer step run the micro-batches (gradient accumulation), clip, step, call the
quantizers' hook, log, evaluate, keep the best model, checkpoint, and stop cleanly on SIGTERM or
when the loss stops being finite. What the run carries between steps is a `RunState`; `_Run`
holds the steps of the loop that are more than a line. Tasks and objectives plug in; nothing here
knows the task's batch.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..convert import after_optimizer_step
from ..durable import replace_directory
from ..errors import InputFileError, TrainingDivergedError, UsageError
from ..model_files import quiet_progress_bars
from ..tokenization import save_tokenizer
from .checkpoints import BEST_DIR, CHECKPOINTS_DIR, TRAINER_STATE, CheckpointManager
from .config import TrainingConfig
from .data import StepBatchSampler
from .interrupt import StopRequest, TrainingInterrupted, fault_injection
from .metrics import Progress, write_final_metrics
from .models import freeze, saved_model
from .objectives import Objective
from .optim import build_optimizer, build_scheduler, group_learning_rates
from .run_dir import check_run_dir, create_run_dir
from .task import Task, move_to_device
from .trackers import TrackedMetricsLog, tracker_accelerator_kwargs
from ..validators import is_int, is_number

__all__ = ["RunState", "TrainResult", "TrainingModule", "check_run_dir", "make_accelerator", "optimizer_step", "train"]


class TrainingModule(nn.Module):
    """The student and the objective in one module, so that one DDP wrapper all-reduces the
    gradients of both (the contrastive projections train with the student).

    The frozen teacher and the task are held outside the module tree: they are neither saved in
    checkpoints nor wrapped, and `train()` / `eval()` leave the teacher in eval mode.
    """

    def __init__(self, student: nn.Module, objective: Objective, task: Task, teacher: nn.Module | None = None) -> None:
        super().__init__()
        self.student = student
        self.objective = objective
        self.__dict__["task"] = task
        self.__dict__["teacher"] = teacher

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        inputs = self.task.model_inputs(batch)
        if self.objective.needs_hidden_states:
            inputs = {**inputs, "output_hidden_states": True}
        student_outputs = self.student(**inputs)
        teacher_outputs = None
        if self.objective.needs_teacher:
            with torch.no_grad():
                teacher_outputs = self.teacher(**inputs)
        return self.objective(self.task, student_outputs, teacher_outputs, batch)


@dataclass
class TrainResult:
    """What a finished run reports (also in `final_metrics.json`)."""

    run_dir: Path
    steps: int
    final: dict[str, float]
    best: dict[str, float]
    best_step: int
    test: dict[str, float] | None


def make_accelerator(config: TrainingConfig | None = None) -> Accelerator:
    """An Accelerator for `config` (None: for evaluation only).

    DDP does not broadcast buffers: the memory banks are kept identical by gathering every
    process's update instead (and are too large to broadcast each step). Several processes on a
    machine without CUDA (`accelerate launch --multi_gpu --num_processes N`, or torchrun) run on
    CPU over gloo: Accelerate only does so when told `cpu=True`, and would otherwise run N
    unrelated single-process copies.
    """
    several_processes = int(os.environ.get("WORLD_SIZE", "1")) > 1
    cpu = several_processes and not torch.cuda.is_available()
    if config is None:
        return Accelerator(cpu=cpu)
    ddp = DistributedDataParallelKwargs(broadcast_buffers=False, find_unused_parameters=config.ddp_find_unused_parameters)
    return Accelerator(
        cpu=cpu, mixed_precision=config.mixed_precision, kwargs_handlers=[ddp], step_scheduler_with_optimizer=False,
        **tracker_accelerator_kwargs(config.report_to, config.output_dir),
    )


def _gather_across_processes(accelerator: Accelerator):
    """All-gather along dim 0 for the memory banks; shorter tensors are padded with -1 (ids < 0 are skipped)."""
    if accelerator.num_processes == 1:
        return lambda tensor: tensor

    def gather(tensor: Tensor) -> Tensor:
        return accelerator.gather(accelerator.pad_across_processes(tensor.contiguous(), dim=0, pad_index=-1))

    return gather


def _position_limit(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_sequences_fit(model: nn.Module, task: Task, train_set: Any, batch_size: int) -> None:
    """Fail with one line when the first training batch is longer than the model's positions
    (a longer sequence would index past the position embeddings on the first step)."""
    limit = _position_limit(model)
    if limit is None or len(train_set) == 0:
        return
    inputs = task.model_inputs(task.collate([train_set[i] for i in range(min(len(train_set), batch_size))]))
    for key, value in inputs.items():
        if key.endswith("input_ids") and isinstance(value, Tensor) and value.shape[-1] > limit:
            raise UsageError(
                f"training sequences of {value.shape[-1]} tokens ({key}) are longer than the model's {limit} positions: "
                f"pass a --block-size (or the task's length limit) of at most {limit}"
            )


@dataclass
class StepResult:
    """What one optimizer step reports: losses averaged over micro-batches and processes, the
    tokens of all processes, the gradient norm before clipping and the learning rates it used."""

    losses: dict[str, float]
    tokens: int
    grad_norm: float | None
    learning_rates: dict[str, float]


def optimizer_step(
    module: nn.Module,
    micro_batches: Iterable[dict[str, Any]],
    *,
    accelerator: Accelerator,
    optimizer: Any,
    scheduler: Any,
    task: Task,
    student: nn.Module,
    max_grad_norm: float,
    accumulation: int = 1,
) -> StepResult:
    """One optimizer step of the loop (also what benchmarks/step_time.py times).

    Forward and backward each of the `accumulation` micro-batches (loss / accumulation), with the
    gradient all-reduce only on the last; clip; AdamW step; scheduler step; the quantizers' hook
    after the step (LAQ's curvature from the new second moments); then one all-reduce of the
    logged numbers.
    """
    totals: dict[str, Tensor] = {}
    tokens = 0
    for micro, batch in enumerate(micro_batches):
        batch = move_to_device(batch, accelerator.device)
        with nullcontext() if micro == accumulation - 1 else accelerator.no_sync(module):
            outputs = module(batch)
            accelerator.backward(outputs["loss"] / accumulation)
        for key, value in outputs.items():
            totals[key] = totals.get(key, 0.0) + value.detach().float() / accumulation
        tokens += task.num_tokens(batch)
    grad_norm = accelerator.clip_grad_norm_(module.parameters(), max_grad_norm) if max_grad_norm > 0 else None
    raw_optimizer = getattr(optimizer, "optimizer", optimizer)
    rates = group_learning_rates(raw_optimizer)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    after_optimizer_step(student, raw_optimizer)

    names = sorted(totals)
    summed = torch.stack([totals[name] for name in names] + [totals["loss"].new_tensor(float(tokens))])
    if accelerator.num_processes > 1:
        summed = accelerator.reduce(summed, reduction="sum")
    losses = {name: float(summed[i]) / accelerator.num_processes for i, name in enumerate(names)}
    return StepResult(losses, int(summed[-1]), None if grad_norm is None else float(grad_norm), rates)


@dataclass
class RunState:
    """What a run carries from step to step, saved in each checkpoint's trainer_state.json."""

    step: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    best_metrics: dict[str, float] | None = None
    last_eval: dict[str, Any] | None = None

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any], checkpoint: Path) -> "RunState":
        names = [name for name in cls.__dataclass_fields__]
        missing = [name for name in names if name not in saved]
        if missing:
            raise InputFileError(
                f"{checkpoint / TRAINER_STATE}: lacks {', '.join(missing)}; the checkpoint is damaged: delete {checkpoint} "
                "to resume from the checkpoint before it, or start a new --output-dir"
            )
        fields = {
            "step": lambda v: is_int(v) and v >= 0,
            "best_metric": lambda v: v is None or is_number(v),
            "best_step": lambda v: v is None or (is_int(v) and v >= 0),
            "best_metrics": lambda v: v is None or (isinstance(v, dict) and all(is_number(x) or x is None for x in v.values())),
            "last_eval": lambda v: v is None or isinstance(v, dict),
        }
        for name, allowed in fields.items():
            if not allowed(saved[name]):
                raise InputFileError(
                    f"{checkpoint / TRAINER_STATE}: {name}={saved[name]!r} is not allowed; the checkpoint is damaged: "
                    f"delete {checkpoint} to resume from the checkpoint before it, or start a new --output-dir"
                )
        return cls(**{name: saved[name] for name in names})

    def improves(self, value: float, greater_is_better: bool) -> bool:
        """Whether `value` beats the best metric so far (a non-finite value never does)."""
        if not math.isfinite(value):
            return False
        if self.best_metric is None:
            return True
        return value > self.best_metric if greater_is_better else value < self.best_metric


class _Run:
    """One run's parts and the steps of its loop that are more than a line: evaluate and keep the
    best model, checkpoint, stop on divergence. `train` below is the loop itself."""

    def __init__(self, *, config, accelerator, module, task, tokenizer, checkpoints, metrics, total_steps, state) -> None:
        self.config, self.accelerator, self.module, self.task = config, accelerator, module, task
        self.tokenizer, self.checkpoints, self.metrics = tokenizer, checkpoints, metrics
        self.total_steps, self.state = total_steps, state
        self.run_dir = Path(config.output_dir)

    def diverged(self, step: int, what: str, values: dict[str, Any]) -> TrainingDivergedError:
        self.metrics.write({"kind": "event", "step": step, "event": "diverged", **values})
        last_checkpoint = self.checkpoints.latest()
        kept = [f"{CHECKPOINTS_DIR}/{last_checkpoint.name}"] if last_checkpoint is not None else []
        if self.state.best_step is not None:
            kept.append(f"{BEST_DIR}/ (step {self.state.best_step})")
        return TrainingDivergedError(
            f"training diverged at step {step}: {what}; kept {' and '.join(kept) or 'nothing'} in {self.run_dir}; "
            f"start a new --output-dir with a lower learning rate (--lr {self.config.learning_rate:g}, "
            f"--quantizer-lr {self.config.quantizer_learning_rate:g})"
        )

    def check_finite(self, step: int, result: StepResult) -> None:
        loss = result.losses["loss"]
        if not math.isfinite(loss):
            raise self.diverged(step, f"the training loss is {loss}", {"loss": loss})
        # A non-finite gradient makes a non-finite update, except under fp16 loss scaling, which skips that step.
        if result.grad_norm is not None and not math.isfinite(result.grad_norm) and self.accelerator.scaler is None:
            raise self.diverged(step, f"the gradient norm is {result.grad_norm}", {"grad_norm": result.grad_norm})

    def student(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.module).student

    def evaluate_and_keep_best(self, step: int) -> None:
        config, task, state = self.config, self.task, self.state
        # Evaluation must not draw from the training RNG, or eval_every would change the run.
        rng_devices = [self.accelerator.device] if self.accelerator.device.type == "cuda" else []
        with torch.random.fork_rng(devices=rng_devices):
            result = task.evaluate(self.student(), config.eval_split, self.accelerator)
        self.metrics.write({"kind": "eval", "step": step, "split": config.eval_split, **result})
        value = float(result[task.primary_metric])
        if not math.isfinite(value):
            raise self.diverged(step, f"the {config.eval_split} {task.primary_metric} is {value}", {task.primary_metric: value})
        state.last_eval = {"step": step, **result}
        if state.improves(value, task.greater_is_better):
            state.best_metric, state.best_step, state.best_metrics = value, step, dict(result)
            if self.accelerator.is_main_process:
                self._save_best()
            self.accelerator.wait_for_everyone()

    def _save_best(self) -> None:
        tmp = self.run_dir / f".tmp-{BEST_DIR}"
        if tmp.exists():
            shutil.rmtree(tmp)
        with quiet_progress_bars():
            self.student().save_pretrained(tmp)
        if self.tokenizer is not None:
            save_tokenizer(self.tokenizer, tmp)
        replace_directory(tmp, self.run_dir / BEST_DIR)

    def save_checkpoint(self, step: int) -> Path:
        if not all(bool(torch.isfinite(parameter).all()) for parameter in self.module.parameters()):
            raise self.diverged(step, "the weights are no longer finite", {})
        self.metrics.sync()
        return self.checkpoints.save(step, {**asdict(self.state), "step": step, "total_steps": self.total_steps})

    def stop_requested(self, stop: StopRequest) -> bool:
        """SIGTERM on any process stops every process (the flags are summed)."""
        requested = torch.tensor(float(stop.requested), device=self.accelerator.device)
        if self.accelerator.num_processes > 1:
            requested = self.accelerator.reduce(requested, reduction="sum")
        return float(requested) > 0

    def log_step(self, step: int, result: StepResult, rate: float, steps_per_epoch: int) -> None:
        if step % self.config.log_every == 0 or step == self.total_steps:
            record = {"kind": "train", "step": step, "epoch": step / steps_per_epoch, **result.losses}
            record.update(result.learning_rates, tokens_per_s=rate)
            if result.grad_norm is not None:
                record["grad_norm"] = result.grad_norm
            self.metrics.write(record)

    def finish(self) -> TrainResult:
        """Evaluate the best model on the test split (when set), write final_metrics.json."""
        config, task, state, accelerator = self.config, self.task, self.state, self.accelerator
        test_result = None
        if config.test_split is not None:
            accelerator.wait_for_everyone()
            best_model = saved_model(task.model_class(), self.run_dir / BEST_DIR).to(accelerator.device)
            test_result = task.evaluate(best_model, config.test_split, accelerator)
            self.metrics.write(
                {"kind": "eval", "step": state.best_step, "split": config.test_split, "model": BEST_DIR, **test_result}
            )
        final = {key: value for key, value in state.last_eval.items() if key != "step"}
        report = {
            "steps": self.total_steps,
            "primary_metric": task.primary_metric,
            "eval_split": config.eval_split,
            "final": final,
            "best": {"step": state.best_step, **state.best_metrics},
            "test": None if test_result is None else {"split": config.test_split, **test_result},
        }
        if accelerator.is_main_process:
            write_final_metrics(self.run_dir, report)
        self.metrics.close()
        accelerator.wait_for_everyone()
        return TrainResult(self.run_dir, self.total_steps, final, state.best_metrics, state.best_step, test_result)


def train(
    *,
    student: nn.Module,
    task: Task,
    objective: Objective,
    config: TrainingConfig,
    teacher: nn.Module | None = None,
    tokenizer: Any = None,
    run_record: dict[str, Any] | None = None,
    accelerator: Accelerator | None = None,
    description: str = "train",
) -> TrainResult:
    """Train `student` on `task` with `objective`; everything is written under `config.output_dir`.

    `teacher` (frozen here) is required by distillation objectives. `tokenizer` is saved beside the
    best model. `run_record` (JSON-ready) is written as run_config.json. Raises
    TrainingInterrupted after checkpointing when the process receives SIGTERM.
    """
    run_dir = Path(config.output_dir)
    if objective.needs_teacher and teacher is None:
        raise ValueError("this objective distills from a teacher: pass teacher=")
    accelerator = accelerator or make_accelerator(config)
    is_main = accelerator.is_main_process
    # Every check that can fail comes before the run directory is made or changed.
    micro_batch = config.micro_batch_size(accelerator.num_processes)
    train_set = task.train_dataset()
    steps_per_epoch = len(train_set) // config.batch_size
    if steps_per_epoch == 0:
        raise UsageError(
            f"the training set has {len(train_set)} examples, fewer than one batch of --batch-size {config.batch_size}: "
            "lower --batch-size or use more training examples"
        )
    check_sequences_fit(student, task, train_set, micro_batch)
    total_steps = config.max_steps if config.max_steps is not None else config.num_epochs * steps_per_epoch
    record = {**(run_record or {}), "training": config.to_dict()}
    check_run_dir(run_dir, config.resume, record)

    if teacher is not None:
        freeze(teacher).to(accelerator.device)
    module = TrainingModule(student, objective, task, teacher)
    optimizer = build_optimizer(student, objective, config)
    scheduler = build_scheduler(optimizer, config, total_steps)
    module, optimizer = accelerator.prepare(module, optimizer)
    objective.gather = _gather_across_processes(accelerator)
    checkpoints = CheckpointManager(
        run_dir, config.keep_checkpoints, accelerator, module=module, optimizer=optimizer, scheduler=scheduler
    )
    # The training RNG (dropout, sampled negatives) differs per process, as it should in data parallelism.
    set_seed(config.seed, device_specific=True)
    state = RunState()
    latest = checkpoints.latest() if config.resume else None
    if latest is not None:  # a damaged checkpoint fails here, before anything on disk changes
        state = RunState.from_checkpoint(checkpoints.load(latest), latest)
        after_optimizer_step(student, optimizer.optimizer)  # LAQ's D lives in the optimizer state, not the model
    metrics = TrackedMetricsLog(run_dir, is_main, accelerator, record)
    if config.resume:
        metrics.truncate_after(state.step)
    accelerator.wait_for_everyone()
    create_run_dir(run_dir, record, is_main)
    accelerator.wait_for_everyone()
    if latest is not None:
        metrics.write({"kind": "event", "step": state.step, "event": "resumed", "checkpoint": latest.name})
    run = _Run(config=config, accelerator=accelerator, module=module, task=task, tokenizer=tokenizer,
               checkpoints=checkpoints, metrics=metrics, total_steps=total_steps, state=state)

    sampler = StepBatchSampler(
        len(train_set), config.batch_size, total_steps, config.seed, accelerator.num_processes,
        accelerator.process_index, config.gradient_accumulation_steps, start_step=state.step,
    )
    # A private generator: creating the iterator would otherwise draw from the global RNG, which a
    # resumed run (creating it after loading the RNG states) would then not replay exactly.
    loader = DataLoader(
        train_set, batch_sampler=sampler, collate_fn=task.collate, num_workers=config.num_workers,
        generator=torch.Generator().manual_seed(config.seed),
    )
    batches = iter(loader)
    progress = Progress(total_steps, state.step, is_main and config.progress, description)
    module.train()
    try:
        with StopRequest() as stop:
            for step in range(state.step + 1, total_steps + 1):
                result = optimizer_step(
                    module,
                    (next(batches) for _ in range(config.gradient_accumulation_steps)),
                    accelerator=accelerator, optimizer=optimizer, scheduler=scheduler, task=task, student=student,
                    max_grad_norm=config.max_grad_norm, accumulation=config.gradient_accumulation_steps,
                )
                run.check_finite(step, result)
                state.step = step
                postfix = {"loss": result.losses["loss"]}
                if task.task_loss_is_nll and "task_loss" in result.losses:
                    postfix["ppl"] = math.exp(min(result.losses["task_loss"], 50.0))
                run.log_step(step, result, progress.step(result.tokens, postfix), steps_per_epoch)
                if (config.eval_every and step % config.eval_every == 0) or step == total_steps:
                    run.evaluate_and_keep_best(step)
                    module.train()
                saved = (config.save_every and step % config.save_every == 0) or step == total_steps
                if saved:
                    run.save_checkpoint(step)
                fault_injection(step)
                if run.stop_requested(stop) and step < total_steps:
                    path = checkpoints.latest() if saved else run.save_checkpoint(step)
                    metrics.write({"kind": "event", "step": step, "event": "stopped on SIGTERM", "checkpoint": path.name})
                    raise TrainingInterrupted(step, str(path))
    finally:
        progress.close()

    if state.last_eval is None or state.last_eval["step"] != total_steps:  # max_steps=0: evaluate as is
        run.evaluate_and_keep_best(total_steps)
        run.save_checkpoint(total_steps)
    return run.finish()
