"""The one training loop, on Accelerate: teacher fine-tuning and quantization-aware training alike.

Read top to bottom, `train` does: prepare the run directory, build optimizer and schedule, resume
from the latest checkpoint if asked, then for each optimizer step run the micro-batches (gradient
accumulation), clip, step, hand LAQ its curvature, log, evaluate, keep the best model, checkpoint,
and stop cleanly on SIGTERM. Tasks and objectives plug in; nothing here knows the task's batch.
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

from .checkpoints import BEST_DIR, CheckpointManager, quiet_saving, recover_directory, replace_directory, write_json_atomic
from .config import TrainingConfig
from .data import StepBatchSampler
from .interrupt import StopRequest, TrainingInterrupted, fault_injection
from .metrics import MetricsLog, Progress, write_final_metrics
from .models import freeze, saved_model
from .objectives import Objective
from .optim import build_optimizer, build_scheduler, group_learning_rates, hand_curvature_to_laq
from .task import Task, move_to_device

RUN_CONFIG = "run_config.json"
# Settings that may change between a run and its resumption without changing its result.
RESUMABLE_CHANGES = ("resume", "progress", "num_workers")


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
        cpu=cpu, mixed_precision=config.mixed_precision, kwargs_handlers=[ddp], step_scheduler_with_optimizer=False
    )


def _gather_across_processes(accelerator: Accelerator):
    """All-gather along dim 0 for the memory banks; shorter tensors are padded with -1 (ids < 0 are skipped)."""
    if accelerator.num_processes == 1:
        return lambda tensor: tensor

    def gather(tensor: Tensor) -> Tensor:
        return accelerator.gather(accelerator.pad_across_processes(tensor.contiguous(), dim=0, pad_index=-1))

    return gather


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    record = json.loads(json.dumps(record))
    record.pop("environment", None)  # library versions may change between a run and its resumption
    for key in RESUMABLE_CHANGES:
        record.get("training", {}).pop(key, None)
    return record


def prepare_run_dir(run_dir: Path, run_record: dict[str, Any], resume: bool, is_main: bool) -> None:
    """Create the run directory and record its settings; refuse to mix two different runs in one."""
    has_run = (run_dir / "checkpoints").is_dir() or (run_dir / "metrics.jsonl").is_file()
    if has_run and not resume:
        raise ValueError(f"{run_dir} already holds a run: pass --resume to continue it or choose another --output-dir")
    config_file = run_dir / RUN_CONFIG
    if resume and config_file.is_file():
        previous = json.loads(config_file.read_text())
        if _comparable(previous) != _comparable(run_record):
            old, new = _comparable(previous), _comparable(run_record)
            differing = sorted(
                f"{section}.{key}"
                for section in set(old) | set(new)
                for key in set(old.get(section) or {}) | set(new.get(section) or {})
                if isinstance(old.get(section), dict) and isinstance(new.get(section), dict)
                and old[section].get(key) != new[section].get(key)
            ) or sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
            raise ValueError(f"--resume with settings that differ from {config_file}: {', '.join(differing)}")
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        recover_directory(run_dir / BEST_DIR)
        write_json_atomic(config_file, run_record)


def _is_better(value: float, best: float | None, greater_is_better: bool) -> bool:
    if best is None or not math.isfinite(best):
        return math.isfinite(value) or best is None
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
    config.micro_batch_size(accelerator.num_processes)  # fails early with a clear message
    train_set = task.train_dataset()  # missing data fails before the run directory is made
    steps_per_epoch = len(train_set) // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"the training set has {len(train_set)} examples, fewer than one batch of batch_size={config.batch_size}")
    total_steps = config.max_steps if config.max_steps is not None else config.num_epochs * steps_per_epoch
    prepare_run_dir(run_dir, {**(run_record or {}), "training": config.to_dict()}, config.resume, is_main)
    accelerator.wait_for_everyone()

    if teacher is not None:
        freeze(teacher).to(accelerator.device)
    module = TrainingModule(student, objective, task, teacher)
    optimizer = build_optimizer(student, objective, config)
    scheduler = build_scheduler(optimizer, config, total_steps)
    module, optimizer = accelerator.prepare(module, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    objective.gather = _gather_across_processes(accelerator)
    raw_optimizer = optimizer.optimizer

    checkpoints = CheckpointManager(run_dir, config.keep_checkpoints, accelerator)
    metrics = MetricsLog(run_dir, is_main)
    # The training RNG (dropout, sampled negatives) differs per process, as it should in data parallelism.
    set_seed(config.seed, device_specific=True)
    state: dict[str, Any] = {"step": 0, "best_metric": None, "best_step": None, "best_metrics": None, "last_eval": None}
    latest = checkpoints.latest() if config.resume else None
    if latest is not None:
        state = checkpoints.load(latest)
        hand_curvature_to_laq(student, raw_optimizer)  # LAQ's D lives in the optimizer state, not the model
        metrics.truncate_after(state["step"])
        metrics.write({"kind": "event", "step": state["step"], "event": "resumed", "checkpoint": latest.name})
    elif config.resume:
        metrics.truncate_after(0)

    def evaluate_and_keep_best(step: int) -> None:
        # Evaluation must not draw from the training RNG, or eval_every would change the run.
        rng_devices = [accelerator.device] if accelerator.device.type == "cuda" else []
        with torch.random.fork_rng(devices=rng_devices):
            result = task.evaluate(accelerator.unwrap_model(module).student, config.eval_split, accelerator)
        metrics.write({"kind": "eval", "step": step, "split": config.eval_split, **result})
        state["last_eval"] = {"step": step, **result}
        value = float(result[task.primary_metric])
        if _is_better(value, state["best_metric"], task.greater_is_better):
            state.update(best_metric=value, best_step=step, best_metrics=dict(result))
            if is_main:
                tmp = run_dir / f".tmp-{BEST_DIR}"
                if tmp.exists():
                    shutil.rmtree(tmp)
                with quiet_saving():
                    accelerator.unwrap_model(module).student.save_pretrained(tmp)
                if tokenizer is not None:
                    tokenizer.save_pretrained(tmp)
                replace_directory(tmp, run_dir / BEST_DIR)
            accelerator.wait_for_everyone()

    def save_checkpoint(step: int) -> Path:
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
                state["step"] = step
                values = result.losses
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
    accelerator.wait_for_everyone()
    return TrainResult(run_dir, total_steps, final, state["best_metrics"], state["best_step"], test_result)
