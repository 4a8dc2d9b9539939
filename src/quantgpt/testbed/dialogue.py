"""The testbed's Persona-Chat teacher: the double-head GPT-2 of the paper's next-utterance task,
fine-tuned from the testbed's pretrained checkpoint (testbed/pretrained.py) on Persona-Chat's
testbed-train split (the first 90% of the validation dialogues; testbed-select, the rest, picks
the best checkpoint by hits@1), cached under `cache/dialogue-teacher-<key>/`.

The folder holds the tokenizer (the pretrained one with the five Persona-Chat special tokens),
the fine-tuning run directory (`finetune/`, the teacher is `finetune/best`) and `teacher.json`,
written last, as the language-modelling teacher's (teacher.py). Its multiple-choice head starts
at random, as when Hugging Face's conv-ai fine-tunes GPT-2.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import api
from ..errors import ConfigError
from ..jsonio import dumps_json
from ..tasks.personachat import add_personachat_special_tokens
from ..tokenization import load_gpt2_tokenizer
from ..training.checkpoints import write_json_atomic
from .pretrained import get_pretrained
from .recipe import TeacherRecipe
from .stages import SELECT_SPLIT, TRAIN_SPLIT, stage_config, stage_summary
from .teacher import TEACHER_SUMMARY, Teacher, cached_teacher
from .tokenizer import save_tokenizer

DIALOGUE_TASK = "personachat"
# Fine-tuning of the dialogue teacher: 1,500 steps of 8 dialogues (2 candidates each, as conv-ai),
# about 1.7 passes over testbed-train and 28 minutes of 2 cores, best of every 500 steps on
# testbed-select. Measured (docs/results/personachat-pilot.md): the multiple-choice head stays at
# chance for the first ~800 steps, so the 600 first tried left the teacher at chance.
FINETUNE_STEPS = 1500
FINETUNE_EVAL_EVERY = 500
# Examples scored on testbed-select and test (20 candidates each, about 0.4 s an example on 2
# cores at this size): the first ones of each split.
EVAL_EXAMPLES = 250
MAX_HISTORY = 2  # conv-ai's window: the last 2 * 2 + 1 utterances
DIALOGUE_FORMAT = 1

Log = Callable[[str], None]


def finetune_schedule(recipe: TeacherRecipe) -> tuple[int, int]:
    """(steps, evaluate every): FINETUNE_STEPS and FINETUNE_EVAL_EVERY, except that a recipe that
    caps its data (`max_blocks`: tests and smoke runs) keeps its own fine-tuning schedule."""
    if recipe.max_blocks is None:
        return FINETUNE_STEPS, FINETUNE_EVAL_EVERY
    return recipe.finetune_steps, recipe.eval_every


def dialogue_key(recipe: TeacherRecipe) -> str:
    """12 hex digits naming the dialogue teacher: its pretrained checkpoint and fine-tuning settings."""
    steps, eval_every = finetune_schedule(recipe)
    settings = {"format": DIALOGUE_FORMAT, "pretrain_key": recipe.pretrain_key(), "steps": steps,
                "eval_every": eval_every, "learning_rate": recipe.finetune_learning_rate,
                "batch_size": recipe.batch_size, "warmup_steps": recipe.warmup_steps, "seed": recipe.seed,
                "weight_decay": recipe.weight_decay, "max_examples": recipe.max_blocks, "max_length": recipe.block_size,
                "eval_examples": EVAL_EXAMPLES}
    return hashlib.sha256(dumps_json(settings).encode()).hexdigest()[:12]


def eval_examples(recipe: TeacherRecipe) -> int:
    """Examples scored on each evaluation split (fewer when the recipe caps its data, as in tests)."""
    return EVAL_EXAMPLES if recipe.max_blocks is None else min(EVAL_EXAMPLES, recipe.max_blocks)


def dialogue_task(tokenizer_dir: str | Path, recipe: TeacherRecipe, data_dir: str | Path, test_set: str = DIALOGUE_TASK):
    """Persona-Chat as the testbed runs it: train on testbed-train, select on testbed-select,
    sequences of at most the teacher's block size, `eval_examples` examples scored a split."""
    return api.load_task(
        DIALOGUE_TASK,
        tokenizer_dir,
        data_dir=str(data_dir),
        train_split=TRAIN_SPLIT,
        max_train_examples=recipe.max_blocks,
        max_eval_examples=eval_examples(recipe),
        max_length=recipe.block_size,
        max_history=MAX_HISTORY,
    )


def get_dialogue_teacher(
    recipe: TeacherRecipe,
    cache_root: str | Path = "cache",
    data_dir: str | Path = "../shared/data",
    progress: bool = True,
    log: Log = print,
    pretrained_root: str | Path = "pretrained",
) -> Teacher:
    """The Persona-Chat teacher of `recipe`: cached, or fine-tuned now from its pretrained
    checkpoint (shipped, cached or trained, `get_pretrained`). An interrupted build is redone."""
    if not recipe.pretrain_steps:
        raise ConfigError("the Persona-Chat testbed fine-tunes the pretrained checkpoint: use a recipe that pretrains (not --recipe scratch)")
    folder = (Path(cache_root) / f"dialogue-teacher-{dialogue_key(recipe)}").resolve()
    cached = cached_teacher(folder, log, lambda summary: f"{SELECT_SPLIT} hits@1 {summary['select_score']:.2f}")
    if cached is not None:
        return cached
    pretrained = get_pretrained(recipe, cache_root, pretrained_root, data_dir, progress, log)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    tokenizer = load_gpt2_tokenizer(pretrained.model_dir)
    add_personachat_special_tokens(tokenizer)
    tokenizer_dir = save_tokenizer(tokenizer, folder / "tokenizer")
    steps, eval_every = finetune_schedule(recipe)
    log(f"dialogue teacher: fine-tuning {steps} steps on Persona-Chat {TRAIN_SPLIT}")
    run_dir = folder / "finetune"
    config = dataclasses.replace(stage_config(recipe, run_dir, steps, recipe.finetune_learning_rate, progress), eval_every=eval_every)
    result = api.finetune(dialogue_task(tokenizer_dir, recipe, data_dir), config, model=str(pretrained.model_dir))
    log(f"dialogue teacher: fine-tuned, {SELECT_SPLIT} hits@1 {result.best['accuracy']:.2f} (step {result.best_step})")
    stage = stage_summary("finetune", folder, run_dir, result, time.perf_counter() - started, metric="accuracy")
    summary: dict[str, Any] = {
        "key": dialogue_key(recipe),
        "recipe": recipe.to_dict(),
        "model_dir": str((run_dir / "best").relative_to(folder)),
        "select_score": result.best["accuracy"],
        "stages": [{**pretrained.summary["stage"], "run_dir": str(pretrained.run_dir)}, stage],
        "wall_seconds": round(time.perf_counter() - started, 1),
        "pretrained": {"folder": str(pretrained.folder), "source": pretrained.source, "pretrain_key": recipe.pretrain_key()},
    }
    write_json_atomic(folder / TEACHER_SUMMARY, summary)
    return Teacher(folder, summary, cached=False)
