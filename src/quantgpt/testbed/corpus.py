"""The pretraining text of the testbed's teacher: general English from ../shared/data/corpus/nltk-2008.

The paper's pipeline starts from a pretrained GPT-2; no such weights reach these machines, so the
teacher is first pretrained on 5 M words of general English (books, newswire, speeches, reviews;
see the data README), then fine-tuned on the task. `PretrainingTask` is the language-modelling
task with that corpus as training text and the task's own held-out split for model selection.
"""

from __future__ import annotations

from pathlib import Path

from ..tasks.errors import DataError
from ..tasks.language_modeling import LMBlockDataset, tokenize_to_blocks
from ..tasks.lm_task import LanguageModelingTask

PRETRAINING_CORPUS = "nltk-2008"
PRETRAINING_FOLDER = Path("corpus") / PRETRAINING_CORPUS


def load_pretraining_lines(data_dir: str | Path, max_lines: int | None = None) -> list[str]:
    """The lines of every text file of the pretraining corpus, files in path order (deterministic).

    max_lines keeps the first lines only (tests). Raises DataError when the folder holds no text.
    """
    folder = Path(data_dir) / PRETRAINING_FOLDER
    files = sorted(folder.rglob("*.txt"))
    if not files:
        raise DataError(f"{folder}: no .txt files (the pretraining corpus, see ../shared/data/README.md)")
    lines: list[str] = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        lines.extend(text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"))
        if max_lines is not None and len(lines) >= max_lines:
            return lines[:max_lines]
    return lines


def corpus_prefix(tokenizer, data_dir: str | Path, max_tokens: int | None) -> list[str]:
    """The corpus's lines (all when `max_tokens` is None), else a prefix of them holding more than
    `max_tokens` tokens, or the whole corpus if shorter: tests read a few blocks of it."""
    if max_tokens is None:
        return load_pretraining_lines(data_dir)
    max_lines = 1 + max_tokens // 8
    while True:  # lines hold a few tokens each: double the prefix until it is long enough
        lines = load_pretraining_lines(data_dir, max_lines)
        text = "".join(line + "\n" for line in lines)
        if len(lines) < max_lines or len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]) > max_tokens:
            return lines
        max_lines *= 2


class PretrainingTask(LanguageModelingTask):
    """Language modelling that trains on the pretraining corpus and evaluates on `dataset`'s splits
    (WikiText-2's testbed-select for model selection). With `max_train_blocks`, only a prefix of
    the corpus long enough for that many blocks is read and tokenized (tests)."""

    def __init__(self, tokenizer, data_dir: str | Path, **options) -> None:
        super().__init__(tokenizer, data_dir=data_dir, train_split=PRETRAINING_CORPUS, **options)

    def _training_lines(self) -> list[str]:
        cap = self.data_options.max_train_examples
        return corpus_prefix(self.tokenizer, self.data_options.data_dir, None if cap is None else cap * self.options.block_size)

    def train_dataset(self) -> LMBlockDataset:
        key = (PRETRAINING_CORPUS, True)
        if key not in self._datasets:
            blocks = tokenize_to_blocks(self._training_lines(), self.tokenizer, self.options.block_size)
            if self.data_options.max_train_examples is not None:
                blocks = blocks[: self.data_options.max_train_examples]
            self._datasets[key] = LMBlockDataset(blocks)
        return self._datasets[key]

    def config(self) -> dict:
        return {**super().config(), "train_corpus": str(PRETRAINING_FOLDER)}
