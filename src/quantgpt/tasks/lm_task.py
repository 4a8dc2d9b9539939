"""Language modelling as a training `Task`: GPT-2 on WikiText-2/103 or PTB, scored by perplexity.

A thin adapter over `language_modeling` (text loading, blocks, perplexity): training examples are
fixed-length blocks of the concatenated text (`block_size`, 512 in the paper), the task loss is
next-token cross-entropy, distillation uses the LM logits and the last-layer hidden states, and
the metric is the perplexity of a split, sharded over processes and summed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM

from quantgpt.errors import UsageError
from quantgpt.tasks.errors import DataError
from quantgpt.tasks.language_modeling import (
    IGNORE_INDEX,
    LM_CORPORA,
    LMBlockDataset,
    collate_lm_blocks,
    evaluate_perplexity,
    load_lm_text,
    tokenize_to_blocks,
)
from quantgpt.settings import setting, validate
from quantgpt.tasks.text_datasets import TextSource, texts_to_lines
from quantgpt.tokenization import load_decoder_tokenizer
from quantgpt.training.task import DistillTargets, Task
from quantgpt.validators import Check, integer, optional, text

# Characters per GPT-2 token are about 4-5 in English; start a capped read from this many per token.
_CHARS_PER_TOKEN_GUESS = 6
# Tokens at the end of a prefix of the text may differ from the whole text's (the last whitespace
# run is cut): a capped read keeps this many tokens past what it uses.
_PREFIX_MARGIN_TOKENS = 64


def _prefix_blocks(lines: list[str], tokenizer: Any, block_size: int, max_blocks: int, keep_tail: bool):
    """The first `max_blocks` blocks of the whole text, tokenizing only a prefix of its lines.

    A prefix ending at a line boundary tokenizes like the whole text except for its last few
    tokens (GPT-2's pre-tokenizer splits at whitespace), so the prefix grows until it holds
    `_PREFIX_MARGIN_TOKENS` tokens beyond the blocks kept; tests/training checks the equality.
    """
    needed = max_blocks * block_size + _PREFIX_MARGIN_TOKENS
    budget = needed * _CHARS_PER_TOKEN_GUESS
    while True:
        count, chars = 0, 0
        while count < len(lines) and chars < budget:
            chars += len(lines[count]) + 1
            count += 1
        if count == len(lines):
            blocks = tokenize_to_blocks(lines, tokenizer, block_size, keep_tail)
            return blocks[:max_blocks]
        blocks = tokenize_to_blocks(lines[:count], tokenizer, block_size, keep_tail=True)
        if sum(block.numel() for block in blocks) >= needed:
            kept = blocks[:max_blocks]
            return kept if keep_tail else torch.stack(kept)
        budget *= 2


@dataclass(frozen=True)
class LMOptions:
    """Language modelling (--task lm).

    dataset: "wikitext-2", "wikitext-2-raw", "wikitext-103", "wikitext-103-raw" or "ptb"; or your
    own text (`text_datasets.TextSource`): "text" with the data files of `DataOptions`, a local
    dataset directory or a hub dataset (`dataset_config`), the text in `text_column`.
    block_size: tokens per training block (512 in the paper).
    """

    dataset: str = setting(
        "wikitext-2",
        Check(lambda v: isinstance(v, str) and bool(v), f"{', '.join(LM_CORPORA)}, text, a dataset directory or hub name"),
        f"corpus: {', '.join(sorted(LM_CORPORA))}; text for your --train-file/--eval-file; "
        "or a local dataset directory or hub dataset (owner/name) with a text column",
    )
    dataset_config: str | None = setting(None, optional(text()), "the hub dataset's configuration (e.g. wikitext-2-raw-v1)")
    text_column: str = setting("text", text(), "column holding the text in JSON lines and datasets")
    block_size: int = setting(512, integer(2), "tokens per training block")

    def __post_init__(self) -> None:
        validate(self)


class LanguageModelingTask(Task):
    """Causal language modelling on one corpus of `LM_CORPORA` (docs/method.md#tasks-and-training-settings).

    tokenizer: GPT-2's. Options: `LMOptions` (dataset, block size, ...) and `DataOptions`
    (data_dir: the folder holding the named corpora's release files, e.g. ../shared/data, None
    reads the hub; train_split: "train", or "testbed-train" for WikiText-2 on the CPU testbed (then
    evaluate on "testbed-select"); max_train_examples / max_eval_examples (also spelled
    max_train_blocks / max_eval_blocks) cap the number of blocks (tests)), by keyword, or the first
    ones by position: `LanguageModelingTask(tokenizer, "wikitext-2", data_dir, block_size=128)`.
    """

    name = "lm"
    primary_metric = "perplexity"
    greater_is_better = False
    task_loss_is_nll = True
    options_class = LMOptions
    positional = ("dataset", "data_dir", "block_size", "train_split", "max_train_blocks", "max_eval_blocks", "eval_batch_size")

    def __init__(self, tokenizer: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(tokenizer, *args, **kwargs)
        options, data_files = self.options, self.data_options.data_files
        # A named corpus keeps its release-file reader; anything else is the user's own text.
        self.source = (
            None if options.dataset in LM_CORPORA
            else TextSource(options.dataset, data_files, options.dataset_config, options.text_column)
        )
        if self.source is None and data_files:
            raise UsageError(f"--train-file/--eval-file/--test-file are read with --dataset text, not --dataset {options.dataset}")
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        self._datasets: dict[tuple[str, bool], LMBlockDataset] = {}

    # --- model
    def model_class(self) -> Any:
        return AutoModelForCausalLM

    # --- data
    def _blocks(self, split: str, training: bool) -> LMBlockDataset:
        key = (split, training)
        if key not in self._datasets:
            try:
                if self.source is not None:
                    lines = texts_to_lines(self.source.texts(split))
                else:
                    lines = load_lm_text(self.options.dataset, split, self.data_options.data_dir)
            except OSError as error:  # the hub out of reach (local files raise DataError instead)
                hint = "check the name and the network" if self.source is not None else "pass --data-dir with local release files"
                raise DataError(
                    f"could not read {self.options.dataset} {split} from the hub ({str(error).splitlines()[0]}); {hint}"
                ) from None
            cap = self.data_options.max_train_examples if training else self.data_options.max_eval_examples
            keep_tail = not training  # evaluation scores every token, the short tail included
            if cap is None:
                blocks = tokenize_to_blocks(lines, self.tokenizer, self.options.block_size, keep_tail)
            else:
                blocks = _prefix_blocks(lines, self.tokenizer, self.options.block_size, cap, keep_tail)
            self._datasets[key] = LMBlockDataset(blocks)
        return self._datasets[key]

    def train_dataset(self) -> LMBlockDataset:
        return self._blocks(self.data_options.train_split, training=True)

    def eval_dataset(self, split: str) -> LMBlockDataset:
        return self._blocks(split, training=False)

    def collate(self, examples: list[Any]) -> dict[str, Tensor]:
        return collate_lm_blocks(examples, pad_token_id=self.pad_token_id)

    # --- losses
    def task_loss(self, outputs: Any, batch: dict[str, Any]) -> Tensor:
        """Mean next-token cross-entropy over the scored tokens (padding labels are -100)."""
        logits = outputs.logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX)

    def distill_targets(self, outputs: Any, batch: dict[str, Any]) -> DistillTargets:
        mask = batch["attention_mask"]
        return DistillTargets(
            logits=[(outputs.logits, mask.bool())],
            hidden_states=outputs.hidden_states,
            token_ids=batch["input_ids"],
            token_mask=mask,
        )

    # --- metric
    def evaluate(self, model: nn.Module, split: str, accelerator: Any) -> dict[str, float]:
        """Perplexity of `split` (token-weighted, every token but each block's first scored).

        Each process scores the blocks `rank, rank + N, ...` and the sums are added up, so the
        result is the same on every process and equals a one-process evaluation.
        """

        def score(loader: DataLoader, show: bool) -> tuple[float, float]:
            result = evaluate_perplexity(model, loader, device=accelerator.device, progress=show)
            return result["loss"] * result["tokens"], float(result["tokens"])

        totals = self.sharded_sums(split, accelerator, score)
        if totals[1] == 0:
            raise DataError(f"split {split!r} holds no token to score")
        loss = float(totals[0] / totals[1])
        return {"perplexity": math.exp(loss), "loss": loss, "tokens": int(totals[1])}

    # --- tokenizer (settings, record and flags: LMOptions and DataOptions, through Task)
    @classmethod
    def load_tokenizer(cls, name_or_path: str) -> Any:
        # A saved tokenizer.json as saved (a Llama/Qwen2 pre-tokenizer is not GPT-2's).
        return load_decoder_tokenizer(name_or_path)
