"""`quantgpt finetune`: fine-tune the full-precision model on a task (the teacher).

Also holds the flags that `quantize` and `evaluate` share with it (task and training flags) and
their mapping to `Task` and `TrainingConfig`.
"""

from __future__ import annotations

import argparse
import sys

from ..api import finetune
from ..training.config import MIXED_PRECISION, TrainingConfig
from ..training.interrupt import SIGTERM_EXIT_CODE, TrainingInterrupted
from ..training.loop import TrainResult, check_run_dir
from ..training.models import check_model_source, tokenizer_source
from ..tasks.text_datasets import add_data_file_arguments
from ..training.task import TASKS, Task, task_class

NAME = "finetune"
HELP = "fine-tune a full-precision model on a task: the teacher for quantization"


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """--task and the data flags every task shares, then each registered task's own flags."""
    group = parser.add_argument_group("task and data")
    group.add_argument("--task", choices=sorted(TASKS), default="lm", help="task (default lm: language modelling)")
    group.add_argument("--tokenizer", help="tokenizer directory or hub name (default: the model's directory)")
    group.add_argument("--data-dir", help="local data folder, e.g. ../shared/data (default: the hub through datasets)")
    group.add_argument("--train-split", default="train", help="training split (CPU testbed for WikiText-2: testbed-train)")
    add_data_file_arguments(group)
    group.add_argument(
        "--max-train-examples", "--max-train-blocks", dest="max_train_examples", type=int, help="cap the training examples (blocks for lm)"
    )
    group.add_argument(
        "--max-eval-examples", "--max-eval-blocks", dest="max_eval_examples", type=int, help="cap the examples of each evaluated split"
    )
    group.add_argument("--eval-batch-size", type=int, default=8, help="examples per evaluation batch (default 8)")
    for name in sorted(TASKS):
        task_class(name).add_arguments(parser)


def add_training_arguments(parser: argparse.ArgumentParser, learning_rate: float) -> None:
    """Flags of `TrainingConfig` (see its docstring for what each does)."""
    group = parser.add_argument_group("training")
    group.add_argument("--output-dir", required=True, help="run directory (checkpoints, metrics.jsonl, best/, ...)")
    group.add_argument("--lr", type=float, default=learning_rate, help=f"backbone learning rate (default {learning_rate})")
    group.add_argument("--quantizer-lr", type=float, default=1e-3, help="learning rate of quantizer parameters (default 1e-3)")
    group.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay of the backbone (default 0)")
    group.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up steps before the linear decay to 0")
    group.add_argument("--batch-size", type=int, default=32, help="global batch per optimizer step (default 32)")
    group.add_argument("--gradient-accumulation-steps", type=int, default=1, help="micro-steps per optimizer step")
    group.add_argument("--epochs", type=int, default=1, help="training epochs (default 1)")
    group.add_argument("--max-steps", type=int, help="optimizer steps (overrides --epochs; 0 only evaluates)")
    group.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping norm (0 disables; default 1)")
    group.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    group.add_argument("--eval-every", type=int, default=500, help="evaluate every N steps and at the end (0: end only)")
    group.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps and at the end (0: end only)")
    group.add_argument("--keep-checkpoints", type=int, default=2, help="how many latest checkpoints to keep (default 2)")
    group.add_argument("--log-every", type=int, default=10, help="write train metrics every N steps (default 10)")
    group.add_argument("--eval-split", default="valid", help="split that picks the best model (default valid)")
    group.add_argument("--test-split", help="split evaluated with the best model at the end")
    group.add_argument("--mixed-precision", choices=MIXED_PRECISION, default="no", help="autocast precision (default no)")
    group.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    group.add_argument(
        "--report-to", nargs="+", default=[], metavar="TRACKER",
        help="also log every metric to these trackers (tensorboard, wandb, mlflow, aim, ...), under OUTPUT_DIR/logs",
    )
    group.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output-dir")
    group.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def training_config_from_args(args: argparse.Namespace) -> TrainingConfig:
    return TrainingConfig(
        output_dir=str(args.output_dir),
        learning_rate=args.lr,
        quantizer_learning_rate=args.quantizer_lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        num_epochs=args.epochs,
        max_steps=args.max_steps,
        max_grad_norm=args.max_grad_norm,
        seed=args.seed,
        eval_every=args.eval_every,
        save_every=args.save_every,
        keep_checkpoints=args.keep_checkpoints,
        log_every=args.log_every,
        eval_split=args.eval_split,
        test_split=args.test_split,
        mixed_precision=args.mixed_precision,
        num_workers=args.num_workers,
        report_to=tuple(args.report_to),
        resume=args.resume,
        progress=args.progress,
    )


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
    source.add_argument("--model", help="pretrained model: a local directory or a hub name (e.g. gpt2)")
    source.add_argument("--model-config", help="or a random model: tiny, tiny-bart, tiny-llama, tiny-qwen2, tiny-opt, gpt2, bart-base or a config.json")
    add_task_arguments(parser)
    add_training_arguments(parser, learning_rate=5e-5)


def run(args: argparse.Namespace) -> int:
    training = training_config_from_args(args)
    check_run_dir(training.output_dir, training.resume)  # before any model or data is loaded
    if args.model is not None:
        check_model_source(args.model, "--model")
    task = task_from_args(args, args.model)

    def start() -> None:
        report(finetune(task, training, model=args.model, model_config=args.model_config), task.primary_metric)

    return run_training(start)
