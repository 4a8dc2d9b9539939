"""The testbed's teacher: trained once from a `TeacherRecipe`, cached under `cache/teacher-<key>/`.

The folder holds the tokenizer, the model configuration, one run directory per stage (`pretrain/`
when the recipe pretrains, `finetune/`) as the training loop writes them, and `teacher.json`,
written last: a folder without it is an interrupted build and is rebuilt from scratch. The
teacher itself is `finetune/best` (a `save_pretrained` directory with its tokenizer).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import api
from ..jsonio import dumps_json
from ..tasks.language_modeling import load_lm_text
from ..training.checkpoints import write_json_atomic
from ..training.config import TrainingConfig
from .corpus import PRETRAINING_CORPUS, PretrainingTask, load_pretraining_lines
from .recipe import TeacherRecipe
from .tokenizer import save_tokenizer, train_bpe_tokenizer

TEACHER_SUMMARY = "teacher.json"
EVALUATIONS = "evaluations.json"
TASK_DATASET = "wikitext-2"
TRAIN_SPLIT = "testbed-train"
SELECT_SPLIT = "testbed-select"
EVAL_BATCH_SIZE = 16

Log = Callable[[str], None]


@dataclass
class Teacher:
    """A trained teacher: `model_dir` is the full-precision model (with its tokenizer); `summary` is
    teacher.json (recipe, held-out perplexity, steps and wall time of each stage); `cached` says
    whether it was found in the cache rather than trained now."""

    folder: Path
    summary: dict[str, Any]
    cached: bool

    @property
    def model_dir(self) -> Path:
        return self.folder / self.summary["model_dir"]

    @property
    def tokenizer_dir(self) -> Path:
        return self.folder / "tokenizer"

    @property
    def run_dirs(self) -> list[Path]:
        return [self.folder / stage["run_dir"] for stage in self.summary["stages"]]


def teacher_folder(recipe: TeacherRecipe, cache_root: str | Path) -> Path:
    """Where the teacher of `recipe` is cached: `<cache_root>/teacher-<recipe.key()>` (absolute)."""
    return (Path(cache_root) / f"teacher-{recipe.key()}").resolve()


def lm_task(tokenizer_dir: str | Path, recipe: TeacherRecipe, data_dir: str | Path, dataset: str = TASK_DATASET):
    """The language-modelling task of the testbed on `dataset`, with the recipe's block size and caps."""
    return api.load_task(
        "lm",
        tokenizer_dir,
        dataset=dataset,
        data_dir=str(data_dir),
        block_size=recipe.block_size,
        train_split=TRAIN_SPLIT,
        max_train_blocks=recipe.max_blocks,
        max_eval_blocks=recipe.max_blocks,
        eval_batch_size=EVAL_BATCH_SIZE,
    )


def _training_text(recipe: TeacherRecipe, data_dir: str | Path) -> list[str]:
    """The text the tokenizer learns from: everything the teacher trains on."""
    lines = load_lm_text(TASK_DATASET, TRAIN_SPLIT, data_dir)
    if recipe.pretrain_steps:
        cap = None if recipe.max_blocks is None else recipe.max_blocks * recipe.block_size
        lines = load_pretraining_lines(data_dir, cap) + lines
    return lines


def _stage_config(recipe: TeacherRecipe, run_dir: Path, steps: int, learning_rate: float, progress: bool) -> TrainingConfig:
    return TrainingConfig(
        output_dir=str(run_dir),
        learning_rate=learning_rate,
        weight_decay=recipe.weight_decay,
        warmup_steps=min(recipe.warmup_steps, max(steps - 1, 0)),
        batch_size=recipe.batch_size,
        max_steps=steps,
        eval_every=recipe.eval_every,
        save_every=0,  # the best model is what the testbed needs; checkpoints only at the end
        keep_checkpoints=1,
        log_every=max(1, min(20, steps // 10)),
        eval_split=SELECT_SPLIT,
        seed=recipe.seed,
        progress=progress,
    )


def _stage_summary(name: str, folder: Path, run_dir: Path, result: Any, seconds: float) -> dict[str, Any]:
    return {
        "name": name,
        "run_dir": str(run_dir.relative_to(folder)),
        "steps": result.steps,
        "best_step": result.best_step,
        "select_perplexity": result.best["perplexity"],
        "final_select_perplexity": result.final["perplexity"],
        "wall_seconds": round(seconds, 1),
    }


def train_teacher(recipe: TeacherRecipe, folder: Path, data_dir: str | Path, progress: bool, log: Log) -> dict[str, Any]:
    """Builds the teacher of `recipe` in `folder` (tokenizer, stages) and returns its summary."""
    started = time.perf_counter()
    log(f"teacher {folder.name}: training a {recipe.vocab_size}-token byte-level BPE tokenizer")
    tokenizer_dir = save_tokenizer(train_bpe_tokenizer(_training_text(recipe, data_dir), recipe.vocab_size), folder / "tokenizer")
    config_dir = folder / "model-config"
    recipe.model_config().save_pretrained(config_dir)
    stages = []
    model_source: dict[str, str] = {"model_config": str(config_dir)}
    if recipe.pretrain_steps:
        log(f"teacher: pretraining {recipe.pretrain_steps} steps on {PRETRAINING_CORPUS} (selection on {TASK_DATASET} {SELECT_SPLIT})")
        task = PretrainingTask(
            api.load_task("lm", tokenizer_dir).tokenizer,
            str(data_dir),
            dataset=TASK_DATASET,
            block_size=recipe.block_size,
            max_train_blocks=recipe.max_blocks,
            max_eval_blocks=recipe.max_blocks,
            eval_batch_size=EVAL_BATCH_SIZE,
        )
        run_dir, t0 = folder / "pretrain", time.perf_counter()
        config = _stage_config(recipe, run_dir, recipe.pretrain_steps, recipe.pretrain_learning_rate, progress)
        result = api.finetune(task, config, **model_source)
        stages.append(_stage_summary("pretrain", folder, run_dir, result, time.perf_counter() - t0))
        log(f"teacher: pretrained, {SELECT_SPLIT} perplexity {result.best['perplexity']:.2f} (step {result.best_step})")
        model_source = {"model": str(run_dir / "best")}
    log(f"teacher: fine-tuning {recipe.finetune_steps} steps on {TASK_DATASET} {TRAIN_SPLIT}")
    run_dir, t0 = folder / "finetune", time.perf_counter()
    config = _stage_config(recipe, run_dir, recipe.finetune_steps, recipe.finetune_learning_rate, progress)
    result = api.finetune(lm_task(tokenizer_dir, recipe, data_dir), config, **model_source)
    stages.append(_stage_summary("finetune", folder, run_dir, result, time.perf_counter() - t0))
    log(f"teacher: fine-tuned, {SELECT_SPLIT} perplexity {result.best['perplexity']:.2f} (step {result.best_step})")
    return {
        "key": recipe.key(),
        "recipe": recipe.to_dict(),
        "model_dir": str((run_dir / "best").relative_to(folder)),
        "select_perplexity": result.best["perplexity"],
        "stages": stages,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def get_teacher(
    recipe: TeacherRecipe,
    cache_root: str | Path = "cache",
    data_dir: str | Path = "../shared/data",
    progress: bool = True,
    log: Log = print,
) -> Teacher:
    """The teacher of `recipe`: from the cache when `teacher.json` is there, else trained now (and
    cached). An interrupted build (a folder without teacher.json) is removed and trained again."""
    folder = teacher_folder(recipe, cache_root)
    summary_file = folder / TEACHER_SUMMARY
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        log(f"teacher {folder.name}: cached ({SELECT_SPLIT} perplexity {summary['select_perplexity']:.2f})")
        return Teacher(folder, summary, cached=True)
    if folder.exists():
        log(f"teacher {folder.name}: removing an interrupted build")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "recipe.json").write_text(dumps_json(recipe.to_dict(), indent=2) + "\n")
    summary = train_teacher(recipe, folder, data_dir, progress, log)
    write_json_atomic(summary_file, summary)
    return Teacher(folder, summary, cached=False)


def teacher_evaluation(teacher: Teacher, recipe: TeacherRecipe, dataset: str, split: str, data_dir: str | Path) -> dict[str, Any]:
    """The teacher's metrics on `dataset`/`split`, computed once and kept in evaluations.json."""
    file = teacher.folder / EVALUATIONS
    evaluations = json.loads(file.read_text()) if file.is_file() else {}
    key = f"{dataset}:{split}"
    if key not in evaluations:
        evaluations[key] = api.evaluate(teacher.model_dir, lm_task(teacher.tokenizer_dir, recipe, data_dir, dataset), split)
        write_json_atomic(file, evaluations)
    return evaluations[key]
