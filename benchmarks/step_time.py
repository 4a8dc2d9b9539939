"""Training-step time of quantization-aware training relative to full-precision logit distillation.

One model in one run: a GPT-2 with 4 layers, width 256 (4 heads) and GPT-2's 50,257-token
vocabulary; blocks of 128 tokens, batch 4, one process. Every variant is timed on the training
loop's own `optimizer_step` (student and teacher forward, losses, backward, clipping, AdamW,
schedule, LAQ's curvature), in interleaved rounds so that background load falls on all alike;
the figure is the median seconds per step, and the ratio is to full-precision logit distillation.

The paper (its Table 5) reports the contrastive loss costing 0.61 -> 0.67 s an iteration
(GPT-2 small, PTB, batch 4 a device): compare the two QuantGPT rows below.

    python benchmarks/step_time.py                                   # random tokens
    python benchmarks/step_time.py --data-dir ../shared/data         # WikiText-2 blocks (testbed-train)
    python benchmarks/step_time.py --device cuda --mixed-precision bf16 --json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from accelerate.utils import set_seed
from transformers import GPT2Config, GPT2LMHeadModel

from quantgpt import QuantConfig, quantize_model
from quantgpt.distill import ContrastiveConfig
from quantgpt.tasks.lm_task import LanguageModelingTask
from quantgpt.tokenization import GPT2_VOCAB_SIZE, load_gpt2_tokenizer
from quantgpt.training import (
    ObjectiveConfig,
    TrainingConfig,
    TrainingModule,
    build_objective,
    build_optimizer,
    build_scheduler,
)
from quantgpt.training.loop import make_accelerator, optimizer_step
from quantgpt.training.models import freeze

# (label, quantization method or None for full precision, contrastive loss on)
VARIANTS = (
    ("fp logit distillation", None, False),
    ("QuantGPT 2-2-8, L_logit + 0.1 L_cont", "quantgpt", True),
    ("QuantGPT 2-2-8, L_logit only", "quantgpt", False),
    ("PACT 2-2-8", "pact", False),
    ("LSQ 2-2-8", "lsq", False),
    ("LAQ 2-2-8", "laq", False),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--bits", default="2-2-8")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds over all variants")
    parser.add_argument("--steps-per-round", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    parser.add_argument("--data-dir", help="read WikiText-2 blocks from here (default: random tokens)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args()


def make_batches(args: argparse.Namespace, count: int) -> tuple[LanguageModelingTask, list[dict]]:
    """`count` batches of `batch_size` blocks, real WikiText-2 text when --data-dir is given."""
    if args.data_dir:
        tokenizer = load_gpt2_tokenizer(Path(args.data_dir) / "gpt2-tokenizer")
        task = LanguageModelingTask(
            tokenizer, "wikitext-2", args.data_dir, block_size=args.block_size,
            train_split="testbed-train", max_train_blocks=count * args.batch_size,
        )
        blocks = list(task.train_dataset().blocks)
    else:
        # Only the pad id is read from the tokenizer when no text is tokenized.
        task = LanguageModelingTask(SimpleNamespace(pad_token_id=None, eos_token_id=GPT2_VOCAB_SIZE - 1), block_size=args.block_size)
        generator = torch.Generator().manual_seed(0)
        blocks = list(torch.randint(0, GPT2_VOCAB_SIZE, (count * args.batch_size, args.block_size), generator=generator))
    examples = [{"input_ids": block} for block in blocks]
    batches = [task.collate(examples[i : i + args.batch_size]) for i in range(0, len(examples), args.batch_size)]
    return task, batches


def build_variant(method, contrastive, teacher, task, args, total_steps):
    """Student, objective, optimizer and schedule of one variant, prepared like the loop does."""
    set_seed(0)
    student = copy.deepcopy(teacher)
    if method is not None:
        quantize_model(student, QuantConfig(method, args.bits))
    objective_config = ObjectiveConfig(kind="distill", contrastive=ContrastiveConfig() if contrastive else None)
    objective = build_objective(objective_config, student.config, teacher.config)
    config = TrainingConfig("unused", batch_size=args.batch_size, mixed_precision=args.mixed_precision)
    accelerator = make_accelerator(config)
    module = TrainingModule(student, objective, task, teacher)
    optimizer = build_optimizer(student, objective, config)
    scheduler = build_scheduler(optimizer, config, total_steps)
    module, optimizer = accelerator.prepare(module, optimizer)
    module.train()
    return SimpleNamespace(
        student=student, module=module, optimizer=optimizer, scheduler=scheduler, accelerator=accelerator, times=[], peak=0
    )


def timed_steps(variant, task, batches, steps: int, record: bool) -> None:
    for batch in batches[:steps]:
        if variant.accelerator.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        optimizer_step(
            variant.module, [batch], accelerator=variant.accelerator, optimizer=variant.optimizer,
            scheduler=variant.scheduler, task=task, student=variant.student, max_grad_norm=1.0,
        )
        if variant.accelerator.device.type == "cuda":
            torch.cuda.synchronize()
            variant.peak = max(variant.peak, torch.cuda.max_memory_allocated())
        if record:
            variant.times.append(time.perf_counter() - start)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "true"  # read by the Accelerator
    total_steps = args.warmup + args.rounds * args.steps_per_round
    task, batches = make_batches(args, args.steps_per_round)
    set_seed(0)
    teacher = GPT2LMHeadModel(
        GPT2Config(n_layer=args.layers, n_embd=args.width, n_head=args.heads, vocab_size=GPT2_VOCAB_SIZE, n_positions=max(1024, args.block_size))
    )
    variants = [build_variant(method, contrastive, teacher, task, args, total_steps) for _, method, contrastive in VARIANTS]
    freeze(teacher).to(variants[0].accelerator.device)
    for variant in variants:
        timed_steps(variant, task, (batches * args.warmup)[: args.warmup], args.warmup, record=False)
    for _ in range(args.rounds):
        for variant in variants:
            timed_steps(variant, task, batches, args.steps_per_round, record=True)

    base = statistics.median(variants[0].times)
    tokens = args.batch_size * args.block_size
    rows = []
    for (label, method, contrastive), variant in zip(VARIANTS, variants):
        seconds = statistics.median(variant.times)
        rows.append({
            "variant": label, "seconds_per_step": seconds, "ratio_to_fp_distill": seconds / base,
            "tokens_per_s": tokens / seconds, "peak_mib": variant.peak / 2**20 if variant.peak else None,
            "steps_timed": len(variant.times),
        })
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    setup = {
        "model": f"GPT-2 {args.layers} layers, width {args.width}, vocab {GPT2_VOCAB_SIZE}",
        "block_size": args.block_size, "batch_size": args.batch_size, "bits": args.bits,
        "data": "WikiText-2 testbed-train" if args.data_dir else "random tokens",
        "device": device, "mixed_precision": args.mixed_precision, "torch": torch.__version__,
    }
    if args.json:
        print(json.dumps({"setup": setup, "results": rows}, indent=2))
        return
    print(" | ".join(f"{key} {value}" for key, value in setup.items()))
    print(f"{'variant':40s} {'s/step':>9s} {'x fp distill':>13s} {'tokens/s':>10s} {'peak MiB':>9s}")
    for row in rows:
        peak = f"{row['peak_mib']:9.0f}" if row["peak_mib"] else f"{'-':>9s}"
        print(f"{row['variant']:40s} {row['seconds_per_step']:9.4f} {row['ratio_to_fp_distill']:13.2f} {row['tokens_per_s']:10.0f} {peak}")


if __name__ == "__main__":
    main()
