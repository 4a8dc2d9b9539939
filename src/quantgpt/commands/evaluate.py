"""`quantgpt evaluate DIR`: a saved model's task metric (perplexity, ...) on one split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..api import evaluate
from ..training.loop import make_accelerator
from .finetune import add_task_arguments, task_from_args

NAME = "evaluate"
HELP = "evaluate a saved model (quantized or full precision) on a task split"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", nargs="?", metavar="DIR", help="a saved model directory, e.g. RUN/best")
    parser.add_argument("--split", default="test", help="split to evaluate (default test)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_task_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if not args.model_dir:
        raise ValueError("evaluate needs the model directory: quantgpt evaluate DIR --task ...")
    if not Path(args.model_dir).is_dir():
        raise FileNotFoundError(f"{args.model_dir}: no such model directory")
    task = task_from_args(args, args.model_dir)
    task.eval_progress = not args.json
    accelerator = make_accelerator()
    metrics = evaluate(args.model_dir, task, args.split, accelerator)
    if accelerator.is_main_process:
        if args.json:
            print(json.dumps({"model": str(args.model_dir), "task": task.name, "split": args.split, **metrics}))
        else:
            print(f"{args.model_dir} on {task.name} {args.split}:")
            for key, value in metrics.items():
                print(f"  {key:12s} {value:.4f}" if isinstance(value, float) else f"  {key:12s} {value}")
    return 0
