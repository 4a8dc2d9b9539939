"""The Python API of the three training-side operations; the command line is a thin layer over it.

    task = load_task("lm", "../shared/data/gpt2-tokenizer", dataset="wikitext-2", data_dir="../shared/data")
    finetune(task, TrainingConfig("runs/teacher", num_epochs=3), model="gpt2")          # the teacher
    quantize(task, TrainingConfig("runs/q228"), teacher="runs/teacher/best",
             quantization=QuantConfig("quantgpt", "2-2-8"))                             # QAT, SPEC Eq. 5
    evaluate("runs/q228/best", task, split="test")                                     # {"perplexity": ...}

Each training call writes a run directory (see `quantgpt.training.loop.train`) and returns a
`TrainResult`. Under `accelerate launch` the same calls run on every process.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import accelerate
import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import set_seed

from . import __version__
from .config import QuantConfig
from .training.config import TrainingConfig
from .training.loop import TrainResult, make_accelerator, train
from .training.models import check_model_source, fresh_model, model_config_from, pretrained_model, quantized_copy, saved_model
from .training.objectives import ObjectiveConfig, build_objective
from .training.task import Task, task_class
from .errors import UsageError


def load_task(name: str, tokenizer: str | Path, **options: Any) -> Task:
    """The registered task `name` ("lm", ...) with the tokenizer at `tokenizer` and the task's options."""
    cls = task_class(name)
    return cls(cls.load_tokenizer(str(tokenizer)), **options)


def _environment() -> dict[str, str]:
    return {
        "quantgpt": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "python": platform.python_version(),
    }


def _check_data(task: Task, training: TrainingConfig) -> None:
    """Load the training, evaluation and (when set) test splits first: missing or malformed data
    fails at once, before any model is loaded (the task keeps what it loaded for the run)."""
    task.train_dataset()
    task.eval_dataset(training.eval_split)
    if training.test_split is not None:
        task.eval_dataset(training.test_split)


def finetune(
    task: Task,
    training: TrainingConfig,
    model: str | Path | None = None,
    model_config: str | None = None,
) -> TrainResult:
    """Fine-tune a full-precision model on `task` with the task loss: the teacher of the paper's pipeline.

    model: a local `save_pretrained` directory or a hub name (e.g. "gpt2"); or model_config: a
    fresh random model from a named config ("tiny", "tiny-bart", "tiny-llama", "tiny-qwen2",
    "tiny-opt", "gpt2", "bart-base") or a config.json, with the tokenizer's vocabulary size. The best model (by the task's metric on
    `training.eval_split`) is saved with the tokenizer in `<output_dir>/best`.
    """
    if (model is None) == (model_config is None):
        raise UsageError("pass exactly one of --model (pretrained) and --model-config (random initialization)")
    if model is not None:
        check_model_source(model, "--model")
    else:
        config = model_config_from(model_config, vocab_size=len(task.tokenizer))
    _check_data(task, training)
    set_seed(training.seed)  # a fresh model's initialization is part of the run
    if model is not None:
        network = pretrained_model(task.model_class(), model, role="--model")
    else:
        network = fresh_model(task.model_class(), config)
    task.prepare_model(network)
    objective_config = ObjectiveConfig(kind="finetune")
    record = {
        "command": "finetune",
        "model": None if model is None else str(model),
        "model_config": model_config,
        "task": task.config(),
        "objective": objective_config.to_dict(),
        "environment": _environment(),
    }
    return train(
        student=network,
        task=task,
        objective=build_objective(objective_config, network.config),
        config=training,
        tokenizer=task.tokenizer,
        run_record=record,
        description="finetune",
    )


def quantize(
    task: Task,
    training: TrainingConfig,
    teacher: str | Path,
    quantization: QuantConfig,
    objective: ObjectiveConfig | None = None,
) -> TrainResult:
    """Quantization-aware training of a student initialized from the full-precision `teacher`.

    The student is a copy of the teacher, quantized with `quantization` (method and W-E-A bits),
    then trained to match the frozen teacher: by default the paper's objective for the method
    (QuantGPT: L_logit + lam * L_cont, Eq. 5; PACT / LSQ / LAQ: logit distillation). The best
    student is saved in `<output_dir>/best`, loadable with `load_quantized`.
    """
    objective_config = objective or ObjectiveConfig.for_method(quantization.method)
    if objective_config.kind != "distill":
        raise UsageError(f"quantize distills from the teacher: objective kind must be 'distill', not {objective_config.kind!r}")
    check_model_source(teacher, "--teacher")
    _check_data(task, training)
    set_seed(training.seed)  # the contrastive projections' initialization is part of the run
    teacher_model = pretrained_model(task.model_class(), teacher, role="--teacher")
    task.prepare_model(teacher_model)
    student = quantized_copy(teacher_model, quantization)
    record = {
        "command": "quantize",
        "teacher": str(teacher),
        "quantization": quantization.to_dict(),
        "task": task.config(),
        "objective": objective_config.to_dict(),
        "environment": _environment(),
    }
    return train(
        student=student,
        teacher=teacher_model,
        task=task,
        objective=build_objective(objective_config, student.config, teacher_model.config),
        config=training,
        tokenizer=task.tokenizer,
        run_record=record,
        description=f"{quantization.method} {quantization.bits}",
    )


def evaluate(model_dir: str | Path, task: Task, split: str, accelerator: Accelerator | None = None) -> dict[str, float]:
    """The task's metrics of a saved model on `split`: a quantized directory is loaded with
    `load_quantized`, a full-precision one with `from_pretrained`."""
    accelerator = accelerator or make_accelerator()
    model = saved_model(task.model_class(), model_dir).to(accelerator.device)
    model.eval()
    return task.evaluate(model, split, accelerator)
