"""`quantgpt quantize`: quantization-aware training of a student from a full-precision teacher."""

from __future__ import annotations

import argparse

from ..api import quantize
from ..config import WEIGHT_METHODS, QuantConfig
from ..distill import NEGATIVE_SOURCES, ContrastiveConfig
from ..training.loop import check_run_dir
from ..training.models import check_model_source
from ..training.objectives import ObjectiveConfig
from .finetune import add_task_arguments, add_training_arguments, report, run_training, task_from_args, training_config_from_args

NAME = "quantize"
HELP = "quantization-aware training (QuantGPT or a baseline) from a full-precision teacher"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("quantization")
    group.add_argument("--teacher", required=True, help="the full-precision teacher: a directory (e.g. RUN/best) or hub name")
    group.add_argument("--method", choices=WEIGHT_METHODS, default="quantgpt", help="weight quantizer (default quantgpt)")
    group.add_argument("--bits", default="2-2-8", help="W-E-A bit widths: weights, word embedding, activations (default 2-2-8)")
    group.add_argument(
        "--quantize-activations", action=argparse.BooleanOptionalAction, default=True, help="8-bit activations (default on)"
    )
    distill = parser.add_argument_group("distillation (SPEC section 5)")
    distill.add_argument(
        "--contrastive",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="token-level contrastive loss (default: on for quantgpt, off for the baselines)",
    )
    distill.add_argument("--negatives", choices=NEGATIVE_SOURCES, default="memory_bank", help="negatives / keys (ablations)")
    distill.add_argument("--num-negatives", type=int, default=32, help="negatives per token (paper: 32, PTB 64)")
    distill.add_argument("--tau", type=float, default=0.1, help="temperature (default 0.1)")
    distill.add_argument("--momentum", type=float, default=0.5, help="memory bank momentum (default 0.5)")
    distill.add_argument("--lam", type=float, default=0.1, help="weight of the contrastive loss (default 0.1)")
    distill.add_argument("--proj-dim", type=int, help="projection size (default: the hidden size)")
    distill.add_argument("--contrastive-layer", type=int, default=-1, help="hidden_states index (-1 last layer, 1 first)")
    distill.add_argument("--hidden-distill", action="store_true", help="add hidden-state MSE (TinyBERT-style, baselines)")
    add_task_arguments(parser)
    add_training_arguments(parser, learning_rate=5e-4)


def objective_from_args(args: argparse.Namespace, method: str) -> ObjectiveConfig:
    contrastive = ContrastiveConfig(
        tau=args.tau,
        momentum=args.momentum,
        num_negatives=args.num_negatives,
        lam=args.lam,
        proj_dim=args.proj_dim,
        negatives=args.negatives,
        layer=args.contrastive_layer,
    )
    return ObjectiveConfig.for_method(method, contrastive, args.contrastive, args.hidden_distill)


def run(args: argparse.Namespace) -> int:
    quantization = QuantConfig(method=args.method, bits=args.bits, quantize_activations=args.quantize_activations)
    objective = objective_from_args(args, args.method)
    training = training_config_from_args(args)
    check_run_dir(training.output_dir, training.resume)  # before any model or data is loaded
    check_model_source(args.teacher, "--teacher")
    task = task_from_args(args, args.teacher)

    def start() -> None:
        report(quantize(task, training, args.teacher, quantization, objective), task.primary_metric)

    return run_training(start)
