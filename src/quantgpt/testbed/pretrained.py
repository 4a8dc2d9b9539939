"""The pretrained checkpoint of the testbed's teacher: the pretraining stage of a `TeacherRecipe`
as an artefact of its own, like a hub checkpoint, named by `recipe.pretrain_key()`.

A folder `pretrained-<key>/` holds `model/` (the best pretraining checkpoint cast to float16, with
its tokenizer: a directory `AutoModelForCausalLM` and `AutoTokenizer.from_pretrained` load),
`pretrain/` (metrics.jsonl and run_config.json of the pretraining run, for the training-curve figure) and
`pretrained.json`, written last: the settings, the stage summary, the torch version and the
SHA-256 of every file under model/. It is built in a temporary sibling folder and renamed into
place, so an interrupted build is never taken for a finished one.

`get_pretrained` takes it shipped in the repository (`pretrained/`), else from the cache, else
trains it into the cache; the checksums are verified on every load. What is trained is a
`PretrainingStage`: the causal language model of the GPT-2-shaped teachers (`CAUSAL_LM`, here) or
the summarization testbed's denoising BART (`summaries.BART_DENOISING`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import api
from ..durable import recover_directory, replace_directory
from ..errors import ConfigError
from ..training.checkpoints import write_json_atomic
from ..training.metrics import METRICS_FILE
from ..training.models import saved_model
from ..training.run_dir import RUN_CONFIG
from .corpus import PRETRAINING_CORPUS, PretrainingTask
from .recipe import TeacherRecipe
from .stages import EVAL_BATCH_SIZE, SELECT_SPLIT, TASK_DATASET, stage_config, stage_summary, training_text
from .tokenizer import save_tokenizer, train_bpe_tokenizer

PRETRAINED_SUMMARY = "pretrained.json"
WEIGHTS_FILE = "model.safetensors"
RUN_DIR = "pretrain"  # the name the training-curve figure gives the stage

Log = Callable[[str], None]


@dataclass(frozen=True)
class PretrainingStage:
    """What a recipe's pretraining trains: `tokenizer(recipe, data_dir)` learns the tokenizer,
    `model_config(recipe, tokenizer)` is the model's configuration, `task(recipe, tokenizer_dir,
    data_dir)` the training `Task` with the tokenizer saved there (its primary metric a perplexity on its testbed-select split), `selection`
    names that split in the log."""

    tokenizer: Callable[[Any, str | Path], Any]
    model_config: Callable[[Any, Any], Any]
    task: Callable[[Any, Any, str | Path], Any]
    selection: str


def _causal_lm_task(recipe: TeacherRecipe, tokenizer_dir: Path, data_dir: str | Path) -> PretrainingTask:
    return PretrainingTask(
        api.load_task("lm", tokenizer_dir).tokenizer,  # as the fine-tuning stage will load it
        str(data_dir),
        dataset=TASK_DATASET,
        block_size=recipe.block_size,
        max_train_blocks=recipe.max_blocks,
        max_eval_blocks=recipe.max_blocks,
        eval_batch_size=EVAL_BATCH_SIZE,
    )


CAUSAL_LM = PretrainingStage(
    tokenizer=lambda recipe, data_dir: train_bpe_tokenizer(training_text(recipe, data_dir), recipe.vocab_size),
    model_config=lambda recipe, tokenizer: recipe.model_config(),
    task=_causal_lm_task,
    selection=f"{TASK_DATASET} {SELECT_SPLIT}",
)


@dataclass
class Pretrained:
    """A pretrained checkpoint: its `folder` (pretrained-<key>/), `summary` (pretrained.json) and
    `source`: "shipped" (in the repository), "cached" or "trained" (now, into the cache)."""

    folder: Path
    summary: dict[str, Any]
    source: str

    @property
    def model_dir(self) -> Path:
        return self.folder / "model"

    @property
    def run_dir(self) -> Path:
        return self.folder / RUN_DIR


def pretrained_folder(recipe: Any, root: str | Path) -> Path:
    """Where the pretrained checkpoint of `recipe` lies under `root`: `<root>/pretrained-<pretrain_key>` (absolute)."""
    return (Path(root) / f"pretrained-{recipe.pretrain_key()}").resolve()


def file_checksums(directory: Path) -> dict[str, str]:
    """{path relative to `directory`: SHA-256 hex digest} of every file under `directory`."""
    checksums = {}
    for path in sorted(path for path in directory.rglob("*") if path.is_file()):
        with open(path, "rb") as handle:
            checksums[path.relative_to(directory).as_posix()] = hashlib.file_digest(handle, "sha256").hexdigest()
    return checksums


def read_pretrained(folder: Path, key: str, shipped: bool) -> dict[str, Any]:
    """pretrained.json of `folder`, once every file under model/ matches its SHA-256 there; else a
    ConfigError naming the file and the fix."""
    fix = f"restore it with git checkout, or delete {folder} to train it again" if shipped else f"delete {folder} to train it again"
    summary_file = folder / PRETRAINED_SUMMARY
    try:
        summary = json.loads(summary_file.read_text())
    except (OSError, ValueError):
        raise ConfigError(f"{summary_file}: missing or not JSON; {fix}") from None
    if summary.get("pretrain_key") != key:
        raise ConfigError(f"{summary_file}: pretrain_key is {summary.get('pretrain_key')!r}, not the folder's {key!r}; {fix}")
    recorded, actual = summary.get("sha256") or {}, file_checksums(folder / "model")
    for name in sorted(recorded.keys() | actual.keys()):
        if recorded.get(name) != actual.get(name):
            problem = "missing" if name not in actual else "not listed in pretrained.json" if name not in recorded else "its SHA-256 differs from pretrained.json's"
            raise ConfigError(f"{folder / 'model' / name}: {problem}; {fix}")
    return summary


def build_pretrained(
    recipe: Any, cache_root: str | Path, data_dir: str | Path, progress: bool, log: Log, stage: PretrainingStage = CAUSAL_LM
) -> Pretrained:
    """Trains the pretrained checkpoint of `recipe` into `<cache_root>/pretrained-<key>`, replacing
    a cached one: `stage`'s tokenizer, then `pretrain_steps` steps of its task on the pretraining
    corpus, keeping the best checkpoint on testbed-select."""
    if not recipe.pretrain_steps:
        raise ConfigError(f"{type(recipe).__name__}.pretrain_steps=0: this recipe has no pretrained checkpoint; use --pretrain-steps N with N >= 1")
    folder = pretrained_folder(recipe, cache_root)
    tmp = folder.with_name(f".tmp-{folder.name}")
    if tmp.exists():
        log(f"{folder.name}: removing an interrupted build")
        shutil.rmtree(tmp)
    work = tmp / "work"  # the tokenizer, configuration and full run the build needs, not kept
    log(f"{folder.name}: training a {recipe.vocab_size}-token byte-level BPE tokenizer")
    tokenizer = stage.tokenizer(recipe, data_dir)
    tokenizer_dir = save_tokenizer(tokenizer, work / "tokenizer")
    config_dir = work / "model-config"
    stage.model_config(recipe, tokenizer).save_pretrained(config_dir)
    log(f"{folder.name}: pretraining {recipe.pretrain_steps} steps on {PRETRAINING_CORPUS} (selection on {stage.selection})")
    task = stage.task(recipe, tokenizer_dir, data_dir)
    run_dir, started = work / "run", time.perf_counter()
    config = stage_config(recipe, run_dir, recipe.pretrain_steps, recipe.pretrain_learning_rate, progress)
    result = api.finetune(task, config, model_config=str(config_dir))
    seconds = time.perf_counter() - started
    log(f"{folder.name}: pretrained, {SELECT_SPLIT} perplexity {result.best['perplexity']:.2f} (step {result.best_step})")
    saved_model(task.model_class(), run_dir / "best").to(torch.float16).save_pretrained(tmp / "model")
    save_tokenizer(tokenizer, tmp / "model")
    (tmp / RUN_DIR).mkdir()
    for name in (METRICS_FILE, RUN_CONFIG):
        shutil.copyfile(run_dir / name, tmp / RUN_DIR / name)
    shutil.rmtree(work)
    summary = {
        "pretrain_key": recipe.pretrain_key(),
        "recipe": recipe.pretrain_settings(),
        "stage": stage_summary("pretrain", tmp, tmp / RUN_DIR, result, seconds),
        "tokens_seen": result.steps * recipe.batch_size * recipe.block_size,
        "torch": torch.__version__,
        "sha256": file_checksums(tmp / "model"),
    }
    write_json_atomic(tmp / PRETRAINED_SUMMARY, summary)
    replace_directory(tmp, folder)
    return Pretrained(folder, summary, "trained")


def get_pretrained(
    recipe: Any,
    cache_root: str | Path = "cache",
    shipped_root: str | Path = "pretrained",
    data_dir: str | Path = "../shared/data",
    progress: bool = True,
    log: Log = print,
    stage: PretrainingStage = CAUSAL_LM,
) -> Pretrained:
    """The pretrained checkpoint of `recipe`: shipped in `shipped_root`, else cached in
    `cache_root`, else trained now (by `stage`) into the cache. A shipped or cached folder whose files do not
    match pretrained.json raises a ConfigError naming the file."""
    key, cached = recipe.pretrain_key(), pretrained_folder(recipe, cache_root)
    recover_directory(cached)  # a crash inside replace_directory may have left the cached copy aside
    for folder, source in ((pretrained_folder(recipe, shipped_root), "shipped"), (cached, "cached")):
        if folder.exists():
            summary = read_pretrained(folder, key, shipped=source == "shipped")
            log(f"{folder.name}: {source} ({SELECT_SPLIT} perplexity {summary['stage']['select_perplexity']:.2f})")
            return Pretrained(folder, summary, source)
    return build_pretrained(recipe, cache_root, data_dir, progress, log, stage)
