"""BART's denoising objective, for pretraining the summarization testbed's BART on the corpus.

BART (Lewis et al. 2020, section 2.2 and its large model's settings) corrupts a text and trains the
model to reconstruct it: sentence permutation (the sentences of a block shuffled), then text
infilling (30% of the tokens masked in spans of Poisson(3.5) lengths, each span replaced by a
single <mask>, 10% of the spans by a random token instead; a span of length 0 inserts a <mask>).
Written by hand: fairseq's `DenoisingDataset` and the Flax example of Transformers
(`run_bart_dlm_flax.py`) implement it, but neither is a library this package can import. Unlike
them, spans are counted in tokens (not whole words) and overlapping spans merge into one, and a
sentence ends at a token ending in ".", "!" or "?".

Each block is corrupted the same way every time it is read (a generator seeded by the seed and
the block's index), so a run is repeatable and the held-out blocks are a fixed evaluation set.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..tasks.errors import DataError
from ..tasks.language_modeling import tokenize_to_blocks
from ..tasks.summarization_task import SummarizationTask
from .corpus import PRETRAINING_CORPUS, PRETRAINING_FOLDER, corpus_prefix

SELECT_SPLIT = "testbed-select"
# Every SELECT_STRIDE-th block of the corpus is held out for model selection (all genres of the
# corpus, not the last file's), the others are trained on.
SELECT_STRIDE = 200
SENTENCE_ENDS = (".", "!", "?")


def sentence_end_ids(tokenizer: Any) -> np.ndarray:
    """A boolean per token id: whether the token's text ends a sentence."""
    ends = np.zeros(len(tokenizer), dtype=bool)
    for token, token_id in tokenizer.get_vocab().items():
        text = tokenizer.convert_tokens_to_string([token]).rstrip()
        ends[token_id] = text.endswith(SENTENCE_ENDS) and token not in tokenizer.all_special_tokens
    return ends


def permute_sentences(tokens: np.ndarray, sentence_ends: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The sentences of `tokens` (each up to and including a sentence-ending token) in random order."""
    cuts = np.flatnonzero(sentence_ends[tokens]) + 1
    sentences = [s for s in np.split(tokens, cuts) if len(s)]
    return np.concatenate([sentences[i] for i in rng.permutation(len(sentences))]) if sentences else tokens


def span_lengths(num_to_mask: int, poisson_lambda: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson span lengths summing to exactly `num_to_mask` (the last one cut short), zeros included."""
    lengths: list[int] = []
    total = 0
    while total < num_to_mask:
        length = int(rng.poisson(poisson_lambda))
        lengths.append(min(length, num_to_mask - total))
        total += lengths[-1]
    return np.array(lengths, dtype=np.int64)


def text_infilling(
    tokens: np.ndarray, mask_id: int, random_ids: tuple[int, int], rng: np.random.Generator,
    mask_ratio: float = 0.3, poisson_lambda: float = 3.5, random_ratio: float = 0.1,
) -> np.ndarray:
    """`tokens` with `ceil(mask_ratio * len)` of them masked in Poisson spans: each span (or run of
    overlapping spans) becomes one <mask>, or with probability `random_ratio` one token drawn from
    `random_ids` = [low, high); each zero-length span inserts a <mask> at a random place."""
    n = len(tokens)
    num_to_mask = math.ceil(mask_ratio * n)
    if n == 0 or num_to_mask == 0:
        return tokens.copy()
    lengths = span_lengths(num_to_mask, poisson_lambda, rng)
    spans, insertions = lengths[lengths > 0], int((lengths == 0).sum())
    masked = np.zeros(n, dtype=bool)
    starts = rng.choice(n, size=min(len(spans), n), replace=False)
    for start, length in zip(starts, spans):
        masked[start : start + length] = True
    run_starts = masked & ~np.concatenate(([False], masked[:-1]))
    replacement = np.where(rng.random(n) < random_ratio, rng.integers(*random_ids, size=n), mask_id)
    out = np.where(run_starts, replacement, tokens)[~masked | run_starts]
    if insertions:
        out = np.insert(out, np.sort(rng.integers(0, len(out) + 1, size=insertions)), mask_id)
    return out


class DenoisingDataset(Dataset):
    """Blocks of token ids (without <s> and </s>) as BART examples: "input_ids" the corrupted block,
    "labels" the block itself, both framed as `<s> ... </s>`; example i corrupted with seed (seed, i)."""

    def __init__(self, blocks: list[np.ndarray], tokenizer: Any, sentence_ends: np.ndarray, settings: dict[str, float], seed: int) -> None:
        self.blocks, self.sentence_ends, self.settings, self.seed = blocks, sentence_ends, settings, seed
        self.bos, self.eos, self.mask = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.mask_token_id
        self.random_ids = (len(tokenizer.all_special_ids), len(tokenizer))

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        rng = np.random.default_rng((self.seed, index))
        block = self.blocks[index]
        permuted = permute_sentences(block, self.sentence_ends, rng)
        corrupted = text_infilling(permuted, self.mask, self.random_ids, rng, **self.settings)
        source = [self.bos, *corrupted.tolist(), self.eos]
        return {"input_ids": source, "attention_mask": [1] * len(source), "labels": [self.bos, *block.tolist(), self.eos]}


class DenoisingTask(SummarizationTask):
    """BART's denoising pretraining on the pretraining corpus: blocks of `block_size` tokens
    (with <s> and </s>), corrupted as the module says, the loss that of the summary (here: the
    original block). testbed-select is every SELECT_STRIDE-th block, corrupted with seed 0; its
    metric is the reconstruction perplexity. `max_blocks` reads only a prefix of the corpus (tests)."""

    name = "bart-denoising"
    primary_metric = "perplexity"
    greater_is_better = False

    def __init__(
        self, tokenizer: Any, data_dir: str | Path, block_size: int, mask_ratio: float, poisson_lambda: float,
        random_ratio: float, seed: int, max_blocks: int | None = None, eval_batch_size: int = 16,
    ) -> None:
        super().__init__(
            tokenizer, data_dir=str(data_dir), train_split=PRETRAINING_CORPUS, max_source_length=block_size,
            max_target_length=block_size, eval_batch_size=eval_batch_size,
        )
        self.block_size, self.max_blocks, self.seed = block_size, max_blocks, seed
        self.corruption = {"mask_ratio": mask_ratio, "poisson_lambda": poisson_lambda, "random_ratio": random_ratio}
        self._splits: dict[str, DenoisingDataset] | None = None

    def _split_datasets(self) -> dict[str, DenoisingDataset]:
        if self._splits is None:
            content = self.block_size - 2  # room for <s> and </s>
            cap = None if self.max_blocks is None else 2 * self.max_blocks * content
            lines = corpus_prefix(self.tokenizer, self.data_options.data_dir, cap)
            blocks = [b.numpy() for b in tokenize_to_blocks(lines, self.tokenizer, content)]
            stride = SELECT_STRIDE if self.max_blocks is None else 2
            train = [b for i, b in enumerate(blocks) if i % stride != stride - 1]
            select = [b for i, b in enumerate(blocks) if i % stride == stride - 1]
            if self.max_blocks is not None:
                train, select = train[: self.max_blocks], select[: self.max_blocks]
            ends = sentence_end_ids(self.tokenizer)
            self._splits = {
                PRETRAINING_CORPUS: DenoisingDataset(train, self.tokenizer, ends, self.corruption, self.seed),
                SELECT_SPLIT: DenoisingDataset(select, self.tokenizer, ends, self.corruption, 0),
            }
        return self._splits

    def train_dataset(self) -> DenoisingDataset:
        return self._split_datasets()[PRETRAINING_CORPUS]

    def eval_dataset(self, split: str) -> DenoisingDataset:
        if split != SELECT_SPLIT:
            raise DataError(f"split {split!r}: the denoising task evaluates on {SELECT_SPLIT} only")
        return self._split_datasets()[split]

    def evaluate(self, model: torch.nn.Module, split: str, accelerator: Any) -> dict[str, float]:
        """The reconstruction perplexity of `split`'s original blocks from their corruptions."""
        nll, tokens = self._reference_loss(model, self.eval_dataset(split), accelerator.device)
        return {"perplexity": math.exp(nll / tokens), "loss": nll / tokens}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "train_corpus": str(PRETRAINING_FOLDER), "corruption": self.corruption,
                "select_stride": SELECT_STRIDE, "max_blocks": self.max_blocks}
