"""`quantgpt finetune`: fine-tune the full-precision model on a task (the teacher).

Also holds the flags that `quantize` and `evaluate` share with it (task and training flags) and
their mapping to `Task` and `TrainingConfig`.
"""

from __future__ import annotations

import argparse
import sys

from .. import settings
from ..api import finetune
from ..training.config import TrainingConfig
from ..training.interrupt import SIGTERM_EXIT_CODE, TrainingInterrupted
from ..training.loop import TrainResult, check_run_dir
from ..model_sources import resolve_model_source
from ..training.models import check_model_source, tokenizer_source
from ..training.task import TASKS, DataOptions, Task, task_class

NAME = "finetune"
HELP = "fine-tune a full-precision model on a task: the teacher for quantization"


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """--task and --tokenizer, the data flags every task shares (`DataOptions`), then each registered
    task's own flags (its `options_class`)."""
    group = parser.add_argument_group("task and data")
    group.add_argument("--task", choices=sorted(TASKS), default="lm", help="task (default lm: language modelling)")
    group.add_argument("--tokenizer", help="tokenizer directory or hub name (default: the model's directory)")
    settings.add_arguments(group, DataOptions)
    for name in sorted(TASKS):
        task_class(name).add_arguments(parser)


def add_training_arguments(parser: argparse.ArgumentParser, learning_rate: float) -> None:
    """Flags of `TrainingConfig` (see its docstring for what each does), one per field."""
    settings.add_arguments(parser, TrainingConfig, title="training", defaults={"learning_rate": learning_rate})


def training_config_from_args(args: argparse.Namespace) -> TrainingConfig:
    return settings.from_args(TrainingConfig, args)


def task_from_args(args: argparse.Namespace, model_dir: str | None) -> Task:
    """The task of `--task`, with the tokenizer of `--tokenizer` or else of `model_dir`."""
    cls = task_class(args.task)
    return cls.from_args(args, cls.load_tokenizer(tokenizer_source(args.tokenizer, model_dir)))


def report(result: TrainResult, primary_metric: str) -> None:
    best = result.best.get(primary_metric)
    print(f"{result.run_dir}: {result.steps} steps; best {primary_metric} {best:.4f} at step {result.best_step}")
    if result.test is not None:
        print(f"  test {primary_metric} {result.test[primary_metric]:.4f} (best model)")


def run_training(start) -> int:
    """Run a training call; SIGTERM after a checkpoint exits with 143 and a one-line note."""
    try:
        start()
    except TrainingInterrupted as stopped:
        print(f"quantgpt: {stopped}", file=sys.stderr)
        return SIGTERM_EXIT_CODE
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("model")
    source.add_argument("--model", help="pretrained model: a local directory, a hub name (e.g. gpt2), a .gguf file, or smollm2-135m")
    source.add_argument("--model-config", help="or a random model: tiny, tiny-bart, tiny-llama, tiny-qwen2, tiny-opt, gpt2, bart-base or a config.json")
    add_task_arguments(parser)
    add_training_arguments(parser, learning_rate=5e-5)


def run(args: argparse.Namespace) -> int:
    training = training_config_from_args(args)
    check_run_dir(training.output_dir, training.resume)  # before any model or data is loaded
    if args.model is not None:
        args.model = resolve_model_source(args.model, "--model")  # a .gguf file: its cached directory
        check_model_source(args.model, "--model")
    task = task_from_args(args, args.model)

    def start() -> None:
        report(finetune(task, training, model=args.model, model_config=args.model_config), task.primary_metric)

    return run_training(start)
