"""The Python API: one verb per step of the pipeline; the command line and the testbed call these.

    task = load_task("lm", "../shared/data/gpt2-tokenizer", dataset="wikitext-2", data_dir="../shared/data")
    finetune(task, TrainingConfig("runs/teacher", num_epochs=3), model="gpt2")   # the full-precision teacher
    student = prepare(teacher_model, QuantConfig("quantgpt", "2-2-8"))           # prepare: fake-quantize a copy
    distill(task, TrainingConfig("runs/q228"), student, teacher_model)           # distill: QAT from the teacher
    convert("runs/q228", "packed/q228")                                          # convert: low-bit export
    evaluate("runs/q228/best", task, split="test")                              # {"perplexity": ...}

`quantize(task, training, teacher="runs/teacher/best", quantization=...)` is prepare + distill from a
saved teacher (`quantgpt quantize`). Each training call writes a run directory (see
`quantgpt.training.loop.train`) and returns a `TrainResult`. Under `accelerate launch` the same
calls run on every process.
"""

from __future__ import annotations

import copy
import platform
from pathlib import Path
from typing import Any

import accelerate
import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import set_seed

from . import __version__
from torch import nn

from .config import QuantConfig
from .convert import quantize_model
from .export import export_gguf, export_packed
from .training.config import TrainingConfig
from .training.loop import TrainResult, make_accelerator, train
from .model_configs import SPECIAL_TOKEN_IDS, load_model_config
from .model_sources import gguf_origin, resolve_model_source
from .training.models import check_model_source, fresh_model, freeze, pretrained_model, saved_model
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
        model = resolve_model_source(model, "--model")
        check_model_source(model, "--model")
    else:
        tokens = {name: getattr(task.tokenizer, name, None) for name in SPECIAL_TOKEN_IDS}
        config = load_model_config(model_config, vocab_size=len(task.tokenizer), special_token_ids=tokens)
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
        "model_gguf": None if model is None else gguf_origin(model),
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


def prepare(model: nn.Module, quantization: QuantConfig) -> nn.Module:
    """The student: a copy of the full-precision `model` with fake-quantized weights and activations
    (`quantize_model`); `model` itself is left as it is, to be the teacher."""
    return quantize_model(copy.deepcopy(model), quantization)


def distill(
    task: Task,
    training: TrainingConfig,
    student: nn.Module,
    teacher: nn.Module,
    objective: ObjectiveConfig | None = None,
    record: dict[str, Any] | None = None,
) -> TrainResult:
    """Train `student` to match the frozen `teacher` on `task` (quantization-aware training when the
    student was made by `prepare`; plain distillation for a full-precision copy).

    objective: by default the paper's for the student's method (`ObjectiveConfig.for_method`:
    QuantGPT's L_logit + lam * L_cont, Eq. 5; logit distillation for the baselines and for an
    unquantized student). `record` adds entries to the run record (run_config.json). The best
    student is saved in `<output_dir>/best`, loadable with `load_quantized`.
    """
    quantization = getattr(student, "quantization_config", None)
    method = quantization.method if isinstance(quantization, QuantConfig) else "full-precision"
    objective_config = objective or ObjectiveConfig.for_method(method)
    if objective_config.kind != "distill":
        raise UsageError(f"distill trains from the teacher: objective kind must be 'distill', not {objective_config.kind!r}")
    _check_data(task, training)
    run_record = {
        "command": "quantize" if isinstance(quantization, QuantConfig) else "distill",
        "teacher": getattr(teacher.config, "_name_or_path", None) or None,
        "quantization": quantization.to_dict() if isinstance(quantization, QuantConfig) else None,
        "task": task.config(),
        "objective": objective_config.to_dict(),
        "environment": _environment(),
        **(record or {}),
    }
    set_seed(training.seed)  # the contrastive projections' initialization is part of the run
    return train(
        student=student,
        teacher=freeze(teacher),
        task=task,
        objective=build_objective(objective_config, student.config, teacher.config),
        config=training,
        tokenizer=task.tokenizer,
        run_record=run_record,
        description=f"{method} {quantization.bits}" if isinstance(quantization, QuantConfig) else "distill",
    )


def quantize(
    task: Task,
    training: TrainingConfig,
    teacher: str | Path,
    quantization: QuantConfig,
    objective: ObjectiveConfig | None = None,
    record: dict[str, Any] | None = None,
) -> TrainResult:
    """Quantization-aware training from a saved full-precision `teacher` (a directory or hub name):
    `prepare` a student from it with `quantization`, then `distill` it from the teacher (`record`
    adds entries to the run record). A `.gguf` teacher (or an embedded model's short name, e.g.
    "smollm2-135m") is read through its cached `save_pretrained` copy (`resolve_model_source`), and
    the record keeps the file's sha256."""
    teacher = resolve_model_source(teacher, "--teacher")
    check_model_source(teacher, "--teacher")
    _check_data(task, training)
    teacher_model = pretrained_model(task.model_class(), teacher, role="--teacher")
    task.prepare_model(teacher_model)
    record = {"teacher": str(teacher), "teacher_gguf": gguf_origin(teacher), **(record or {})}
    return distill(task, training, prepare(teacher_model, quantization), teacher_model, objective, record)


def convert(model_dir: str | Path, out: str | Path, format: str = "packed", **options: Any):
    """Export a quantized model (a `save_pretrained` directory, or a run directory with best/) as real
    low-bit weights: "packed" (a directory for quantgpt's runtime, `export_packed`) or "gguf" (one
    file for llama.cpp, `export_gguf`); `options` go to that function."""
    exporters = {"packed": export_packed, "gguf": export_gguf}
    if format not in exporters:
        raise UsageError(f"format={format!r} is not allowed: use one of {', '.join(exporters)}")
    return exporters[format](model_dir, out, **options)


def evaluate(model: str | Path | nn.Module, task: Task, split: str, accelerator: Accelerator | None = None) -> dict[str, float]:
    """The task's metrics of a model on `split`: a model in memory, or a saved one (a quantized
    directory is loaded with `load_quantized`, a full-precision one with `from_pretrained`)."""
    accelerator = accelerator or make_accelerator()
    if not isinstance(model, nn.Module):
        model = saved_model(task.model_class(), model)
    model = model.to(accelerator.device)
    model.eval()
    return task.evaluate(model, split, accelerator)
