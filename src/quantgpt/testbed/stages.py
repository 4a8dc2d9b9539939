"""What the two training stages of the testbed's teacher share: the data splits, the tokenizer's
training text, the training settings of a stage and the summary it leaves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..tasks.language_modeling import load_lm_text
from ..training.config import TrainingConfig
from .corpus import load_pretraining_lines
from .recipe import TeacherRecipe

TASK_DATASET = "wikitext-2"
TRAIN_SPLIT = "testbed-train"
SELECT_SPLIT = "testbed-select"
EVAL_BATCH_SIZE = 16


def training_text(recipe: TeacherRecipe, data_dir: str | Path) -> list[str]:
    """The text the tokenizer learns from: everything the teacher trains on."""
    lines = load_lm_text(TASK_DATASET, TRAIN_SPLIT, data_dir)
    if recipe.pretrain_steps:
        cap = None if recipe.max_blocks is None else recipe.max_blocks * recipe.block_size
        lines = load_pretraining_lines(data_dir, cap) + lines
    return lines


def stage_config(recipe: TeacherRecipe, run_dir: Path, steps: int, learning_rate: float, progress: bool) -> TrainingConfig:
    """The training settings of one stage of `steps` steps at `learning_rate`, written to `run_dir`."""
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


def stage_summary(name: str, folder: Path, run_dir: Path, result: Any, seconds: float, metric: str = "perplexity") -> dict[str, Any]:
    """A stage's entry in the summary: its run directory (relative to `folder`), steps, best step,
    the task's `metric` on the selection split (best and final) and wall time."""
    return {
        "name": name,
        "run_dir": str(run_dir.relative_to(folder)),
        "steps": result.steps,
        "best_step": result.best_step,
        f"select_{metric}": result.best[metric],
        f"final_select_{metric}": result.final[metric],
        "wall_seconds": round(seconds, 1),
    }
