"""`quantgpt evaluate DIR`: a saved model's task metric (perplexity, ...) on one split."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..api import evaluate
from ..errors import MissingInputError, UsageError
from ..model_files import check_model_dir
from ..model_sources import resolve_model_source
from ..jsonio import dumps_json
from ..harness import print_lm_eval
from ..training.loop import make_accelerator
from .finetune import add_task_arguments, task_from_args

NAME = "evaluate"
HELP = "evaluate a saved model (quantized or full precision) on a task split"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", nargs="?", metavar="DIR", help="a saved model directory (e.g. RUN/best), a .gguf file, or smollm2-135m")
    parser.add_argument("--split", default="test", help="split to evaluate (default test)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--lm-eval", nargs="+", metavar="TASK",
        help="run lm-evaluation-harness tasks instead (e.g. quantgpt_wikitext2 from configs/lm-eval; the eval extra)",
    )
    parser.add_argument("--lm-eval-limit", type=int, help="first N documents of each --lm-eval task (default all)")
    add_task_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if not args.model_dir:
        raise UsageError("evaluate needs the model directory: quantgpt evaluate DIR --task ...")
    if args.lm_eval is not None and not all(task.strip() for task in args.lm_eval):
        raise UsageError("--lm-eval: an empty task name; name lm-eval tasks, e.g. --lm-eval quantgpt_wikitext2")
    args.model_dir = resolve_model_source(args.model_dir, "evaluate")  # a .gguf file: its cached directory
    if not Path(args.model_dir).is_dir():
        raise MissingInputError(f"{args.model_dir}: no such model directory")
    check_model_dir(args.model_dir)  # a damaged model fails before the data loads
    if args.lm_eval:
        return print_lm_eval(args.model_dir, args.lm_eval, args.lm_eval_limit, args.json)
    task = task_from_args(args, args.model_dir)
    task.eval_progress = not args.json
    accelerator = make_accelerator()
    metrics = evaluate(args.model_dir, task, args.split, accelerator)
    if accelerator.is_main_process:
        if args.json:
            print(dumps_json({"model": str(args.model_dir), "task": task.name, "split": args.split, **metrics}))
        else:
            print(f"{args.model_dir} on {task.name} {args.split}:")
            for key, value in metrics.items():
                print(f"  {key:12s} {value:.4f}" if isinstance(value, float) else f"  {key:12s} {value}")
    return 0
