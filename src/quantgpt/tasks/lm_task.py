"""Language modelling as a training `Task`: GPT-2 on WikiText-2/103 or PTB, scored by perplexity.

A thin adapter over `language_modeling` (text loading, blocks, perplexity): training examples are
fixed-length blocks of the concatenated text (`block_size`, 512 in the paper), the task loss is
next-token cross-entropy, distillation uses the LM logits and the last-layer hidden states, and
the metric is the perplexity of a split, sharded over processes and summed.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
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
from quantgpt.tasks.text_datasets import TextSource, data_files_from_args, texts_to_lines
from quantgpt.tokenization import load_decoder_tokenizer
from quantgpt.training.task import DistillTargets, Task
from quantgpt.config import ConfigError
from quantgpt.errors import MissingInputError

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


class LanguageModelingTask(Task):
    """Causal language modelling on one corpus of `LM_CORPORA` (SPEC section 7).

    tokenizer: GPT-2's. dataset: "wikitext-2", "wikitext-2-raw", "wikitext-103", "wikitext-103-raw"
    or "ptb"; or your own text (`text_datasets.TextSource`): "text" with `data_files` ({split: path}
    of plain text or JSON lines), a local dataset directory or a hub dataset (`dataset_config`), the
    text in `text_column`. data_dir: the folder holding the named corpora's release files (e.g.
    ../shared/data); None reads the hub. train_split: "train", or "testbed-train" for WikiText-2 on the CPU testbed (then evaluate
    on "testbed-select"). max_train_blocks / max_eval_blocks cap the number of blocks (tests).
    """

    name = "lm"
    primary_metric = "perplexity"
    greater_is_better = False
    task_loss_is_nll = True

    def __init__(
        self,
        tokenizer: Any,
        dataset: str = "wikitext-2",
        data_dir: str | Path | None = None,
        block_size: int = 512,
        train_split: str = "train",
        max_train_blocks: int | None = None,
        max_eval_blocks: int | None = None,
        eval_batch_size: int = 8,
        eval_progress: bool = False,
        data_files: dict[str, str] | None = None,
        dataset_config: str | None = None,
        text_column: str = "text",
    ) -> None:
        if not isinstance(dataset, str) or not dataset:
            raise UsageError(f"dataset={dataset!r}: allowed are {', '.join(LM_CORPORA)}, text, a dataset directory or hub name")
        # A named corpus keeps its release-file reader; anything else is the user's own text.
        self.source = None if dataset in LM_CORPORA else TextSource(dataset, data_files or {}, dataset_config, text_column)
        if self.source is None and data_files:
            raise UsageError(f"--train-file/--eval-file/--test-file are read with --dataset text, not --dataset {dataset}")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 2:
            raise ConfigError(f"block_size={block_size!r}: allowed is an integer >= 2")
        for name, value in (("max_train_blocks", max_train_blocks), ("max_eval_blocks", max_eval_blocks)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name}={value!r}: allowed is None or an integer >= 1")
        if isinstance(eval_batch_size, bool) or not isinstance(eval_batch_size, int) or eval_batch_size < 1:
            raise ConfigError(f"eval_batch_size={eval_batch_size!r}: allowed is an integer >= 1")
        if data_dir is not None and not Path(data_dir).is_dir():
            raise MissingInputError(f"--data-dir {data_dir}: no such directory")
        self.tokenizer = tokenizer
        self.dataset = dataset
        self.data_dir = None if data_dir is None else str(data_dir)
        self.block_size = block_size
        self.train_split = train_split
        self.max_train_blocks = max_train_blocks
        self.max_eval_blocks = max_eval_blocks
        self.eval_batch_size = eval_batch_size
        self.eval_progress = eval_progress
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
                    lines = load_lm_text(self.dataset, split, self.data_dir)
            except OSError as error:  # the hub out of reach (local files raise DataError instead)
                hint = "check the name and the network" if self.source is not None else "pass --data-dir with local release files"
                raise DataError(
                    f"could not read {self.dataset} {split} from the hub ({str(error).splitlines()[0]}); {hint}"
                ) from None
            cap = self.max_train_blocks if training else self.max_eval_blocks
            keep_tail = not training  # evaluation scores every token, the short tail included
            if cap is None:
                blocks = tokenize_to_blocks(lines, self.tokenizer, self.block_size, keep_tail)
            else:
                blocks = _prefix_blocks(lines, self.tokenizer, self.block_size, cap, keep_tail)
            self._datasets[key] = LMBlockDataset(blocks)
        return self._datasets[key]

    def train_dataset(self) -> LMBlockDataset:
        return self._blocks(self.train_split, training=True)

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
        dataset = self.eval_dataset(split)
        rank, world = accelerator.process_index, accelerator.num_processes
        shard = Subset(dataset, range(rank, len(dataset), world))
        nll, tokens = 0.0, 0
        if len(shard):
            loader = DataLoader(shard, batch_size=self.eval_batch_size, collate_fn=self.collate)
            show = self.eval_progress and accelerator.is_main_process
            result = evaluate_perplexity(model, loader, device=accelerator.device, progress=show)
            nll, tokens = result["loss"] * result["tokens"], result["tokens"]
        totals = torch.tensor([nll, float(tokens)], dtype=torch.float64, device=accelerator.device)
        if world > 1:
            totals = accelerator.reduce(totals, reduction="sum")
        if totals[1] == 0:
            raise DataError(f"split {split!r} holds no token to score")
        loss = float(totals[0] / totals[1])
        return {"perplexity": math.exp(loss), "loss": loss, "tokens": int(totals[1])}

    # --- record and command line
    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dataset": self.dataset,
            "data_dir": self.data_dir,
            "block_size": self.block_size,
            "train_split": self.train_split,
            "max_train_blocks": self.max_train_blocks,
            "max_eval_blocks": self.max_eval_blocks,
            **(self.source.config() if self.source is not None else {}),
        }

    @classmethod
    def load_tokenizer(cls, name_or_path: str) -> Any:
        # A saved tokenizer.json as saved (a Llama/Qwen2 pre-tokenizer is not GPT-2's).
        return load_decoder_tokenizer(name_or_path)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("language modelling (--task lm)")
        group.add_argument(
            "--dataset",
            default="wikitext-2",
            help=f"corpus: {', '.join(sorted(LM_CORPORA))} (default wikitext-2); text for your --train-file/--eval-file; "
            "or a local dataset directory or hub dataset (owner/name) with a text column",
        )
        group.add_argument("--dataset-config", help="the hub dataset's configuration (e.g. wikitext-2-raw-v1)")
        group.add_argument("--text-column", default="text", help="column holding the text in JSON lines and datasets (default text)")
        group.add_argument("--block-size", type=int, default=512, help="tokens per training block (default 512)")

    @classmethod
    def from_args(cls, args: argparse.Namespace, tokenizer: Any) -> "LanguageModelingTask":
        return cls(
            tokenizer,
            dataset=args.dataset,
            data_dir=args.data_dir,
            block_size=args.block_size,
            train_split=args.train_split,
            max_train_blocks=args.max_train_examples,
            max_eval_blocks=args.max_eval_examples,
            eval_batch_size=args.eval_batch_size,
            data_files=data_files_from_args(args),
            dataset_config=args.dataset_config,
            text_column=args.text_column,
        )
