"""The testbed's teacher: trained once from a `TeacherRecipe`, cached under `cache/teacher-<key>/`.

The folder holds the tokenizer, the model configuration, the fine-tuning run directory
(`finetune/`) as the training loop writes it, and `teacher.json`, written last: a folder without
it is an interrupted build and is rebuilt from scratch. The teacher itself is `finetune/best` (a
`save_pretrained` directory with its tokenizer).

A recipe that pretrains fine-tunes from its pretrained checkpoint (testbed/pretrained.py): shipped
in the repository (`pretrained/`), cached (`cache/pretrained-<pretrain_key>/`) or trained now;
its tokenizer is copied to the teacher's folder, and teacher.json's "pretrain" stage points at
that checkpoint's run directory. Without pretraining the tokenizer is trained here and fine-tuning
starts from a random model.
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
from ..tokenization import load_gpt2_tokenizer
from ..training.checkpoints import write_json_atomic
from .pretrained import Pretrained, get_pretrained
from .recipe import TeacherRecipe
from .stages import EVAL_BATCH_SIZE, SELECT_SPLIT, TASK_DATASET, TRAIN_SPLIT, stage_config, stage_summary, training_text
from .tokenizer import save_tokenizer, train_bpe_tokenizer

TEACHER_SUMMARY = "teacher.json"
EVALUATIONS = "evaluations.json"

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
        """The run directory of each stage; the pretraining one is an absolute path (it lies in the
        pretrained checkpoint's folder), which `/` keeps as it is."""
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


def train_teacher(
    recipe: TeacherRecipe, folder: Path, data_dir: str | Path, progress: bool, log: Log, pretrained: Pretrained | None = None
) -> dict[str, Any]:
    """Builds the teacher of `recipe` in `folder` and returns its summary: fine-tuned from
    `pretrained` (with its tokenizer) when given, else from a random model with a tokenizer trained here."""
    started = time.perf_counter()
    config_dir = folder / "model-config"
    recipe.model_config().save_pretrained(config_dir)
    stages = []
    if pretrained is None:
        log(f"teacher {folder.name}: training a {recipe.vocab_size}-token byte-level BPE tokenizer")
        tokenizer = train_bpe_tokenizer(training_text(recipe, data_dir), recipe.vocab_size)
        model_source = {"model_config": str(config_dir)}
    else:
        tokenizer = load_gpt2_tokenizer(pretrained.model_dir)  # the GPT2TokenizerFast it was saved as
        model_source = {"model": str(pretrained.model_dir)}  # float16 on disk, loaded in float32
        stages.append({**pretrained.summary["stage"], "run_dir": str(pretrained.run_dir)})
    tokenizer_dir = save_tokenizer(tokenizer, folder / "tokenizer")
    log(f"teacher: fine-tuning {recipe.finetune_steps} steps on {TASK_DATASET} {TRAIN_SPLIT}")
    run_dir, t0 = folder / "finetune", time.perf_counter()
    config = stage_config(recipe, run_dir, recipe.finetune_steps, recipe.finetune_learning_rate, progress)
    result = api.finetune(lm_task(tokenizer_dir, recipe, data_dir), config, **model_source)
    stages.append(stage_summary("finetune", folder, run_dir, result, time.perf_counter() - t0))
    log(f"teacher: fine-tuned, {SELECT_SPLIT} perplexity {result.best['perplexity']:.2f} (step {result.best_step})")
    summary = {
        "key": recipe.key(),
        "recipe": recipe.to_dict(),
        "model_dir": str((run_dir / "best").relative_to(folder)),
        "select_perplexity": result.best["perplexity"],
        "stages": stages,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    if pretrained is not None:
        summary["pretrained"] = {"folder": str(pretrained.folder), "source": pretrained.source, "pretrain_key": recipe.pretrain_key()}
    return summary


def cached_teacher(folder: Path, log: Log, describe: Callable[[dict[str, Any]], str]) -> Teacher | None:
    """The teacher cached in `folder` (its summary file written last), logged with `describe(summary)`;
    None when there is none. A folder without the summary is an interrupted build: it is removed."""
    summary_file = folder / TEACHER_SUMMARY
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        log(f"{folder.name}: cached ({describe(summary)})")
        return Teacher(folder, summary, cached=True)
    if folder.exists():
        log(f"{folder.name}: removing an interrupted build")
        shutil.rmtree(folder)
    return None


def get_teacher(
    recipe: TeacherRecipe,
    cache_root: str | Path = "cache",
    data_dir: str | Path = "../shared/data",
    progress: bool = True,
    log: Log = print,
    pretrained_root: str | Path = "pretrained",
) -> Teacher:
    """The teacher of `recipe`: from the cache when `teacher.json` is there, else trained now (and
    cached). An interrupted build (a folder without teacher.json) is removed and trained again. A
    recipe that pretrains starts from its pretrained checkpoint (`get_pretrained`): shipped in
    `pretrained_root` (a missing folder: none shipped), cached in `cache_root`, or trained now."""
    folder = teacher_folder(recipe, cache_root)
    cached = cached_teacher(folder, log, lambda summary: f"{SELECT_SPLIT} perplexity {summary['select_perplexity']:.2f}")
    if cached is not None:
        return cached
    pretrained = get_pretrained(recipe, cache_root, pretrained_root, data_dir, progress, log) if recipe.pretrain_steps else None
    folder.mkdir(parents=True)
    (folder / "recipe.json").write_text(dumps_json(recipe.to_dict(), indent=2) + "\n")
    summary = train_teacher(recipe, folder, data_dir, progress, log, pretrained)
    write_json_atomic(folder / TEACHER_SUMMARY, summary)
    return Teacher(folder, summary, cached=False)


def teacher_evaluation(teacher: Teacher, task: Any, test_set: str, split: str) -> dict[str, Any]:
    """The teacher's metrics on `split` of `task` (the one of `test_set`), computed once and kept
    in evaluations.json."""
    file = teacher.folder / EVALUATIONS
    evaluations = json.loads(file.read_text()) if file.is_file() else {}
    key = f"{test_set}:{split}"
    if key not in evaluations:
        evaluations[key] = api.evaluate(teacher.model_dir, task, split)
        write_json_atomic(file, evaluations)
    return evaluations[key]
