"""The summarization testbed's teacher: a small BART pretrained with BART's denoising objective on
the corpus (testbed/denoising.py), then fine-tuned on XSum's testbed-train (850 of the 1,000 local
pairs; testbed-select, the next 50, picks the checkpoint by ROUGE-2; testbed-test, the last 100,
is reported). The paper's QuantBART starts from facebook/bart-base, which does not reach these
machines.

The pretrained checkpoint is kept like the GPT-2 teacher's (testbed/pretrained.py: float16,
checksums, `pretrained-<pretrain_key>/`, cached, not shipped); the fine-tuned teacher is cached
under `cache/summary-teacher-<key>/`, its summary file written last, as the other teachers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import api
from ..errors import ConfigError
from ..tasks.summarization import LENGTH_PENALTY, NUM_BEAMS, TESTBED_SLICES, TESTBED_SOURCE, load_xsum
from ..tokenization import load_bart_tokenizer
from ..training.checkpoints import write_json_atomic
from .corpus import load_pretraining_lines
from .denoising import DenoisingTask
from .pretrained import PretrainingStage, get_pretrained
from .recipe import BartRecipe
from .stages import EVAL_BATCH_SIZE, SELECT_SPLIT, TRAIN_SPLIT, stage_config, stage_summary
from .teacher import TEACHER_SUMMARY, Teacher, cached_teacher
from .tokenizer import save_tokenizer, train_bart_tokenizer

SUMMARY_TASK = "xsum"
SUMMARY_TEST_SPLIT = "testbed-test"
# Beam search for selection and test, as the paper (6 beams, length penalty 1), summaries of at
# most 60 tokens (fairseq's XSum limit), no n-gram repeated (fairseq's XSum recipe: 3), which
# keeps a small model out of loops.
NO_REPEAT_NGRAM_SIZE = 3
MAX_SUMMARY_TOKENS = 60

Log = Callable[[str], None]


def bart_training_text(recipe: BartRecipe, data_dir: str | Path) -> list[str]:
    """What the BART tokenizer learns from: the corpus and XSum testbed-train's articles and summaries."""
    cap = None if recipe.max_blocks is None else recipe.max_blocks * recipe.block_size
    pairs = load_xsum(TRAIN_SPLIT, data_dir)
    if recipe.max_blocks is not None:
        pairs = pairs.select(range(min(recipe.max_blocks, len(pairs))))
    return load_pretraining_lines(data_dir, cap) + [text for pair in pairs for text in (pair["document"], pair["summary"])]


def _denoising_task(recipe: BartRecipe, tokenizer_dir: Path, data_dir: str | Path) -> DenoisingTask:
    return DenoisingTask(
        load_bart_tokenizer(tokenizer_dir), data_dir, recipe.block_size, recipe.mask_ratio, recipe.poisson_lambda,
        recipe.random_ratio, recipe.seed, recipe.max_blocks, EVAL_BATCH_SIZE,
    )


BART_DENOISING = PretrainingStage(
    tokenizer=lambda recipe, data_dir: train_bart_tokenizer(bart_training_text(recipe, data_dir), recipe.vocab_size, model_max_length=recipe.block_size),
    model_config=lambda recipe, tokenizer: recipe.model_config(tokenizer),
    task=_denoising_task,
    selection=f"held-out corpus blocks ({SELECT_SPLIT}), reconstruction perplexity",
)


def summary_task(tokenizer_dir: str | Path, recipe: BartRecipe, data_dir: str | Path, test_set: str = SUMMARY_TASK):
    """XSum as the testbed runs it: train on testbed-train, select on testbed-select, report on
    testbed-test; articles of at most `block_size` tokens, summaries of `target_length`."""
    return api.load_task(
        SUMMARY_TASK,
        tokenizer_dir,
        data_dir=str(data_dir),
        train_split=TRAIN_SPLIT,
        max_train_examples=recipe.max_blocks,
        max_eval_examples=recipe.max_blocks,  # every pair, unless the recipe caps its data (tests)
        eval_batch_size=EVAL_BATCH_SIZE,
        max_source_length=recipe.block_size,
        max_target_length=recipe.target_length,
        no_repeat_ngram_size=NO_REPEAT_NGRAM_SIZE,
        max_new_tokens=min(MAX_SUMMARY_TOKENS, recipe.block_size - 1),  # within the decoder's positions
    )


def summary_protocol(recipe: BartRecipe) -> str:
    """The XSum protocol in one sentence, from the settings it describes (for the table's notes)."""
    train, select, test = (f"{100 * (end - start):.0f}%" for start, end in TESTBED_SLICES.values())
    return (
        f"the local XSum pairs (../shared/data/xsum/{TESTBED_SOURCE}.jsonl) in file order: the first {train} fine-tune, the next {select} "
        f"({SELECT_SPLIT}) select, the last {test} ({SUMMARY_TEST_SPLIT}) are reported; ROUGE-1/2/L F-measures "
        f"(rouge-score, stemmed) of beam-search summaries ({NUM_BEAMS} beams, length penalty {LENGTH_PENALTY:g}, "
        f"at most {min(MAX_SUMMARY_TOKENS, recipe.block_size - 1)} tokens, no repeated {NO_REPEAT_NGRAM_SIZE}-gram)."
    )


def get_summary_teacher(
    recipe: BartRecipe,
    cache_root: str | Path = "cache",
    data_dir: str | Path = "../shared/data",
    progress: bool = True,
    log: Log = print,
    pretrained_root: str | Path = "pretrained",
) -> Teacher:
    """The XSum teacher of `recipe`: cached, or fine-tuned now from its pretrained checkpoint
    (shipped, cached or pretrained now by denoising). An interrupted build is redone."""
    if not isinstance(recipe, BartRecipe):
        raise ConfigError(f"the XSum testbed needs a BartRecipe, not a {type(recipe).__name__}")
    folder = (Path(cache_root) / f"summary-teacher-{recipe.key()}").resolve()
    cached = cached_teacher(folder, log, lambda summary: f"{SELECT_SPLIT} ROUGE-2 {summary['select_score']:.2f}")
    if cached is not None:
        return cached
    pretrained = get_pretrained(recipe, cache_root, pretrained_root, data_dir, progress, log, stage=BART_DENOISING)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    tokenizer_dir = save_tokenizer(load_bart_tokenizer(pretrained.model_dir), folder / "tokenizer")
    log(f"summary teacher: fine-tuning {recipe.finetune_steps} steps on XSum {TRAIN_SPLIT}")
    run_dir = folder / "finetune"
    config = stage_config(recipe, run_dir, recipe.finetune_steps, recipe.finetune_learning_rate, progress)
    result = api.finetune(summary_task(tokenizer_dir, recipe, data_dir), config, model=str(pretrained.model_dir))
    log(f"summary teacher: fine-tuned, {SELECT_SPLIT} ROUGE-2 {result.best['rouge2']:.2f} (step {result.best_step})")
    stage = stage_summary("finetune", folder, run_dir, result, time.perf_counter() - started, metric="rouge2")
    summary: dict[str, Any] = {
        "key": recipe.key(),
        "recipe": recipe.to_dict(),
        "model_dir": str((run_dir / "best").relative_to(folder)),
        "select_score": result.best["rouge2"],
        "stages": [{**pretrained.summary["stage"], "run_dir": str(pretrained.run_dir)}, stage],
        "wall_seconds": round(time.perf_counter() - started, 1),
        "pretrained": {"folder": str(pretrained.folder), "source": pretrained.source, "pretrain_key": recipe.pretrain_key()},
        "splits": {name: list(bounds) for name, bounds in TESTBED_SLICES.items()},
    }
    write_json_atomic(folder / TEACHER_SUMMARY, summary)
    return Teacher(folder, summary, cached=False)
