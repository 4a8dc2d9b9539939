"""The one training loop, on Accelerate: teacher fine-tuning and quantization-aware training alike.

Read top to bottom, `train` does: check every setting and the run directory (nothing is written
until all checks pass), build optimizer and schedule, resume from the latest checkpoint if asked,
then for each optimizer step run the micro-batches (gradient accumulation), clip, step, hand LAQ its
curvature, log, evaluate, keep the best model, checkpoint, and stop cleanly on SIGTERM or when the
loss stops being finite. Tasks and objectives plug in; nothing here knows the task's batch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..durable import recover_directory, replace_directory
from ..errors import (
    InputFileError,
    MissingInputError,
    OutputPathError,
    TrainingDivergedError,
    UsageError,
)
from ..jsonio import json_ready
from ..model_files import quiet_progress_bars
from .checkpoints import (
    BEST_DIR,
    CHECKPOINTS_DIR,
    TRAINER_STATE,
    CheckpointManager,
    write_json_atomic,
)
from .config import TrainingConfig
from .data import StepBatchSampler
from .interrupt import StopRequest, TrainingInterrupted, fault_injection
from .metrics import FINAL_METRICS_FILE, METRICS_FILE, Progress, write_final_metrics
from .models import freeze, saved_model
from .objectives import Objective
from .optim import (
    build_optimizer,
    build_scheduler,
    group_learning_rates,
    hand_curvature_to_laq,
)
from .task import Task, move_to_device
from .trackers import LOGS_DIR, TrackedMetricsLog, tracker_accelerator_kwargs

RUN_CONFIG = "run_config.json"
# Settings that may change between a run and its resumption without changing its result; the
# output directory is the folder being resumed, however it is spelled or wherever it was moved.
RESUMABLE_CHANGES = ("resume", "progress", "num_workers", "output_dir", "report_to")
# Paths in a run record, compared resolved: `./runs/t` and `runs/t` are the same teacher.
RECORDED_PATHS = (("teacher",), ("model",), ("model_config",), ("task", "data_dir"))
# What a run directory holds (besides the temporary names starting with a dot).
RUN_ENTRIES = (RUN_CONFIG, METRICS_FILE, CHECKPOINTS_DIR, BEST_DIR, FINAL_METRICS_FILE, LOGS_DIR)
TRAINER_STATE_KEYS = ("step", "best_metric", "best_step", "best_metrics", "last_eval")


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


def _checked_trainer_state(state: Any, checkpoint: Path) -> dict[str, Any]:
    missing = [key for key in TRAINER_STATE_KEYS if key not in state]
    if missing:
        raise InputFileError(
            f"{checkpoint / TRAINER_STATE}: lacks {', '.join(missing)}; the checkpoint is damaged: delete {checkpoint} "
            "to resume from the checkpoint before it, or start a new --output-dir"
        )
    return state


def _is_better(value: float, best: float | None, greater_is_better: bool) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if greater_is_better else value < best


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
    gradient all-reduce only on the last; clip; AdamW step; scheduler step; LAQ's curvature from
    the new second moments; then one all-reduce of the logged numbers.
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
    hand_curvature_to_laq(student, raw_optimizer)

    names = sorted(totals)
    summed = torch.stack([totals[name] for name in names] + [totals["loss"].new_tensor(float(tokens))])
    if accelerator.num_processes > 1:
        summed = accelerator.reduce(summed, reduction="sum")
    losses = {name: float(summed[i]) / accelerator.num_processes for i, name in enumerate(names)}
    return StepResult(losses, int(summed[-1]), None if grad_norm is None else float(grad_norm), rates)


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
    raw_optimizer = optimizer.optimizer

    checkpoints = CheckpointManager(
        run_dir, config.keep_checkpoints, accelerator, module=module, optimizer=optimizer, scheduler=scheduler
    )
    # The training RNG (dropout, sampled negatives) differs per process, as it should in data parallelism.
    set_seed(config.seed, device_specific=True)
    state: dict[str, Any] = {"step": 0, "best_metric": None, "best_step": None, "best_metrics": None, "last_eval": None}
    latest = checkpoints.latest() if config.resume else None
    if latest is not None:  # a damaged checkpoint fails here, before anything on disk changes
        state = _checked_trainer_state(checkpoints.load(latest), latest)
        hand_curvature_to_laq(student, raw_optimizer)  # LAQ's D lives in the optimizer state, not the model
    metrics = TrackedMetricsLog(run_dir, is_main, accelerator, record)
    if config.resume:
        metrics.truncate_after(state["step"])
    accelerator.wait_for_everyone()
    create_run_dir(run_dir, record, is_main)
    accelerator.wait_for_everyone()
    if latest is not None:
        metrics.write({"kind": "event", "step": state["step"], "event": "resumed", "checkpoint": latest.name})

    def diverged(step: int, what: str, values: dict[str, Any]) -> TrainingDivergedError:
        metrics.write({"kind": "event", "step": step, "event": "diverged", **values})
        last_checkpoint = checkpoints.latest()
        kept = [f"{CHECKPOINTS_DIR}/{last_checkpoint.name}"] if last_checkpoint is not None else []
        if state["best_step"] is not None:
            kept.append(f"{BEST_DIR}/ (step {state['best_step']})")
        return TrainingDivergedError(
            f"training diverged at step {step}: {what}; kept {' and '.join(kept) or 'nothing'} in {run_dir}; "
            f"start a new --output-dir with a lower learning rate (--lr {config.learning_rate:g}, "
            f"--quantizer-lr {config.quantizer_learning_rate:g})"
        )

    def evaluate_and_keep_best(step: int) -> None:
        # Evaluation must not draw from the training RNG, or eval_every would change the run.
        rng_devices = [accelerator.device] if accelerator.device.type == "cuda" else []
        with torch.random.fork_rng(devices=rng_devices):
            result = task.evaluate(accelerator.unwrap_model(module).student, config.eval_split, accelerator)
        metrics.write({"kind": "eval", "step": step, "split": config.eval_split, **result})
        value = float(result[task.primary_metric])
        if not math.isfinite(value):
            raise diverged(step, f"the {config.eval_split} {task.primary_metric} is {value}", {task.primary_metric: value})
        state["last_eval"] = {"step": step, **result}
        if _is_better(value, state["best_metric"], task.greater_is_better):
            state.update(best_metric=value, best_step=step, best_metrics=dict(result))
            if is_main:
                tmp = run_dir / f".tmp-{BEST_DIR}"
                if tmp.exists():
                    shutil.rmtree(tmp)
                with quiet_progress_bars():
                    accelerator.unwrap_model(module).student.save_pretrained(tmp)
                if tokenizer is not None:
                    tokenizer.save_pretrained(tmp)
                replace_directory(tmp, run_dir / BEST_DIR)
            accelerator.wait_for_everyone()

    def save_checkpoint(step: int) -> Path:
        if not all(bool(torch.isfinite(parameter).all()) for parameter in module.parameters()):
            raise diverged(step, "the weights are no longer finite", {})
        metrics.sync()
        return checkpoints.save(step, {**state, "step": step, "total_steps": total_steps})

    sampler = StepBatchSampler(
        len(train_set),
        config.batch_size,
        total_steps,
        config.seed,
        accelerator.num_processes,
        accelerator.process_index,
        config.gradient_accumulation_steps,
        start_step=state["step"],
    )
    # A private generator: creating the iterator would otherwise draw from the global RNG, which a
    # resumed run (creating it after loading the RNG states) would then not replay exactly.
    loader = DataLoader(
        train_set,
        batch_sampler=sampler,
        collate_fn=task.collate,
        num_workers=config.num_workers,
        generator=torch.Generator().manual_seed(config.seed),
    )
    batches = iter(loader)
    progress = Progress(total_steps, state["step"], is_main and config.progress, description)
    module.train()
    try:
        with StopRequest() as stop:
            for step in range(state["step"] + 1, total_steps + 1):
                result = optimizer_step(
                    module,
                    (next(batches) for _ in range(config.gradient_accumulation_steps)),
                    accelerator=accelerator,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    task=task,
                    student=student,
                    max_grad_norm=config.max_grad_norm,
                    accumulation=config.gradient_accumulation_steps,
                )
                values = result.losses
                if not math.isfinite(values["loss"]):
                    raise diverged(step, f"the training loss is {values['loss']}", {"loss": values["loss"]})
                # A non-finite gradient makes a non-finite update, except under fp16 loss scaling, which skips that step.
                if result.grad_norm is not None and not math.isfinite(result.grad_norm) and accelerator.scaler is None:
                    raise diverged(step, f"the gradient norm is {result.grad_norm}", {"grad_norm": result.grad_norm})
                state["step"] = step
                postfix = {"loss": values["loss"]}
                if task.task_loss_is_nll and "task_loss" in values:
                    postfix["ppl"] = math.exp(min(values["task_loss"], 50.0))
                rate = progress.step(result.tokens, postfix)
                if step % config.log_every == 0 or step == total_steps:
                    record = {"kind": "train", "step": step, "epoch": step / steps_per_epoch, **values}
                    record.update(result.learning_rates, tokens_per_s=rate)
                    if result.grad_norm is not None:
                        record["grad_norm"] = result.grad_norm
                    metrics.write(record)

                if (config.eval_every and step % config.eval_every == 0) or step == total_steps:
                    evaluate_and_keep_best(step)
                    module.train()
                saved = (config.save_every and step % config.save_every == 0) or step == total_steps
                if saved:
                    save_checkpoint(step)
                fault_injection(step)
                stop_requested = torch.tensor(float(stop.requested), device=accelerator.device)
                if accelerator.num_processes > 1:
                    stop_requested = accelerator.reduce(stop_requested, reduction="sum")
                if float(stop_requested) > 0 and step < total_steps:
                    path = checkpoints.latest() if saved else save_checkpoint(step)
                    metrics.write({"kind": "event", "step": step, "event": "stopped on SIGTERM", "checkpoint": path.name})
                    raise TrainingInterrupted(step, str(path))
    finally:
        progress.close()

    if state["last_eval"] is None or state["last_eval"]["step"] != total_steps:  # max_steps=0: evaluate as is
        evaluate_and_keep_best(total_steps)
        save_checkpoint(total_steps)
    test_result = None
    if config.test_split is not None:
        accelerator.wait_for_everyone()
        best_model = saved_model(task.model_class(), run_dir / BEST_DIR).to(accelerator.device)
        test_result = task.evaluate(best_model, config.test_split, accelerator)
        metrics.write({"kind": "eval", "step": state["best_step"], "split": config.test_split, "model": BEST_DIR, **test_result})
    final = {key: value for key, value in state["last_eval"].items() if key != "step"}
    report = {
        "steps": total_steps,
        "primary_metric": task.primary_metric,
        "eval_split": config.eval_split,
        "final": final,
        "best": {"step": state["best_step"], **state["best_metrics"]},
        "test": None if test_result is None else {"split": config.test_split, **test_result},
    }
    if is_main:
        write_final_metrics(run_dir, report)
    metrics.close()
    accelerator.wait_for_everyone()
    return TrainResult(run_dir, total_steps, final, state["best_metrics"], state["best_step"], test_result)
