"""Language modelling: WikiText-2, WikiText-103 and PTB text, fixed-length blocks, perplexity.

The text of a split is kept as its release files hold it: a list of lines which, each followed by
"\\n", give back the file byte for byte. Tokenizing that whole text and cutting it into blocks of
`block_size` tokens is the setting of docs/method.md#tasks-and-training-settings (sequence length 512).

CPU testbed protocol (../shared/data/README.md): WikiText-2's train split is not available
locally, so split "testbed-train" is the first 90% of the validation lines and "testbed-select"
the last 10% (held out for model selection); "test" stays the test split.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from quantgpt.tasks.errors import DataError
from quantgpt.config import ConfigError

IGNORE_INDEX = -100
TESTBED_TRAIN_FRACTION = 0.9
TESTBED_SPLITS = ("testbed-train", "testbed-select")
SPLIT_ALIASES = {"validation": "valid"}


@dataclass(frozen=True)
class LMCorpus:
    """Where one corpus lives: a folder of release files locally, a dataset on the hub."""

    name: str
    folder: str
    file_patterns: tuple[str, ...]  # "{split}" is replaced by train/valid/test; the first that exists wins
    hub_path: str
    hub_config: str
    hub_text_column: str


LM_CORPORA: dict[str, LMCorpus] = {
    corpus.name: corpus
    for corpus in (
        # pytorch/examples names the tokenized release's files {split}.txt; the release itself wiki.{split}.tokens.
        LMCorpus(
            "wikitext-2",
            "wikitext-2",
            ("{split}.txt", "wiki.{split}.tokens"),
            "Salesforce/wikitext",
            "wikitext-2-v1",
            "text",
        ),
        LMCorpus(
            "wikitext-2-raw",
            "wikitext-2-raw",
            ("wiki.{split}.raw",),
            "Salesforce/wikitext",
            "wikitext-2-raw-v1",
            "text",
        ),
        LMCorpus(
            "wikitext-103", "wikitext-103", ("wiki.{split}.tokens",), "Salesforce/wikitext", "wikitext-103-v1", "text"
        ),
        LMCorpus(
            "wikitext-103-raw",
            "wikitext-103-raw",
            ("wiki.{split}.raw",),
            "Salesforce/wikitext",
            "wikitext-103-raw-v1",
            "text",
        ),
        LMCorpus("ptb", "ptb", ("ptb.{split}.txt",), "ptb-text-only/ptb_text_only", "penn_treebank", "sentence"),
    )
}


def _corpus(name: str) -> LMCorpus:
    if name not in LM_CORPORA:
        raise ConfigError(f"corpus={name!r} is unknown; allowed: {', '.join(LM_CORPORA)}")
    return LM_CORPORA[name]


def _read_release_lines(path: Path) -> list[str]:
    """The lines of a release file, without their "\\n".

    Read directly rather than through datasets' "text" builder: that would cache a copy of every
    file, and str.splitlines would also split on the form feeds and U+2028 the text may contain.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: expected UTF-8 text ({error.reason} at byte {error.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _local_lines(corpus: LMCorpus, split: str, data_dir: Path) -> list[str]:
    folder = data_dir / corpus.folder
    candidates = [folder / pattern.format(split=split) for pattern in corpus.file_patterns]
    for path in candidates:
        if path.is_file():
            return _read_release_lines(path)
    expected = " or ".join(str(path) for path in candidates)
    raise DataError(f"{expected}: file not found (corpus {corpus.name!r}, split {split!r})")


def _hub_lines(corpus: LMCorpus, split: str) -> list[str]:
    """The hub's rows put back into the release's line layout, so both sources tokenize the same."""
    from datasets import load_dataset

    hub_split = "validation" if split == "valid" else split
    rows = load_dataset(corpus.hub_path, corpus.hub_config, split=hub_split)[corpus.hub_text_column]
    if corpus.name == "ptb":
        # The hub strips the space Mikolov's files put at both ends of each line.
        return [f" {row} " for row in rows]
    # WikiText rows keep their "\n"; the release's blank " " lines became empty rows.
    return [row.removesuffix("\n") if row else " " for row in rows]


def load_lm_text(corpus: str, split: str, data_dir: str | Path | None = None) -> list[str]:
    """The lines of one split of a language-modelling corpus.

    corpus: one of LM_CORPORA ("wikitext-2", "wikitext-2-raw", "wikitext-103", "wikitext-103-raw", "ptb").
    split: "train", "valid" (or "validation"), "test", or the testbed splits "testbed-train" /
    "testbed-select" (first 90% / last 10% of the validation lines).
    data_dir: folder holding `<corpus folder>/<release file>` (e.g. ../shared/data); None reads
    the hub through `datasets`.
    """
    spec = _corpus(corpus)
    split = SPLIT_ALIASES.get(split, split)
    allowed = ("train", "valid", "test", *TESTBED_SPLITS)
    if split not in allowed:
        raise ConfigError(f"split={split!r} is unknown; allowed: {', '.join(allowed)}")
    if split in TESTBED_SPLITS:
        valid_lines = load_lm_text(corpus, "valid", data_dir)
        cut = int(len(valid_lines) * TESTBED_TRAIN_FRACTION)
        return valid_lines[:cut] if split == "testbed-train" else valid_lines[cut:]
    if data_dir is None:
        return _hub_lines(spec, split)
    return _local_lines(spec, split, Path(data_dir))


def tokenize_to_blocks(
    lines: Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    block_size: int = 512,
    keep_tail: bool = False,
) -> torch.Tensor | list[torch.Tensor]:
    """Token ids of the whole text, cut into consecutive blocks of `block_size` tokens.

    The text is the lines each followed by "\\n" (the release file itself), tokenized in one
    piece so that no token is split at a line boundary differently from the file.

    keep_tail=False (training): a LongTensor (num_blocks, block_size); the tail shorter than a
    block is dropped. keep_tail=True (evaluation): a list of 1-D LongTensors, all of length
    `block_size` except possibly the last, which holds the tail, so that every token is scored;
    `collate_lm_blocks` pads and masks it.
    """
    if block_size < 2:
        raise ConfigError(f"block_size={block_size} is too small; allowed: an integer >= 2")
    text = "".join(line + "\n" for line in lines)
    # verbose=False: the whole corpus is longer than the model's context on purpose.
    ids = torch.tensor(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"], dtype=torch.long)
    num_full = ids.numel() // block_size
    blocks = ids[: num_full * block_size].view(num_full, block_size)
    if keep_tail:
        tail = ids[num_full * block_size :]
        return list(blocks.unbind(0)) + ([tail] if tail.numel() else [])
    if num_full == 0:
        raise DataError(f"the text has {ids.numel()} tokens, fewer than one block of block_size={block_size}")
    return blocks


class LMBlockDataset(Dataset):
    """Blocks of token ids as a torch Dataset; item i is {"input_ids": 1-D LongTensor}."""

    def __init__(self, blocks: torch.Tensor | Sequence[torch.Tensor]):
        self.blocks = blocks

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.blocks[index]}


def collate_lm_blocks(
    batch: Sequence[Mapping[str, torch.Tensor] | torch.Tensor], pad_token_id: int = 0
) -> dict[str, torch.Tensor]:
    """Stacks blocks into {"input_ids", "attention_mask", "labels"}, padding on the right.

    labels are the input ids (the model shifts them) with -100 on padding, so padding is never
    scored; the pad id itself is irrelevant since it is masked.
    """
    sequences = [item["input_ids"] if isinstance(item, Mapping) else item for item in batch]
    length = max(sequence.numel() for sequence in sequences)
    input_ids = torch.full((len(sequences), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, : sequence.numel()] = sequence
        attention_mask[row, : sequence.numel()] = 1
    labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def make_lm_dataloader(
    blocks: torch.Tensor | Sequence[torch.Tensor],
    batch_size: int,
    shuffle: bool = False,
    pad_token_id: int = 0,
    **dataloader_kwargs,
) -> DataLoader:
    """A DataLoader over `blocks` yielding `collate_lm_blocks` batches."""
    return DataLoader(
        LMBlockDataset(blocks),
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=partial(collate_lm_blocks, pad_token_id=pad_token_id),
        **dataloader_kwargs,
    )


def _model_device(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@torch.no_grad()
def evaluate_perplexity(
    model: torch.nn.Module,
    dataloader: Iterable[Mapping[str, torch.Tensor] | torch.Tensor],
    device: torch.device | str | None = None,
    progress: bool = True,
) -> dict[str, float | int]:
    """Token-weighted mean negative log-likelihood of a causal LM and its exponential.

    loss = (sum over every scored token of -log p(token | its prefix in the block)) / tokens,
    perplexity = exp(loss). A token is scored when it is not the first of its block and its label
    is not -100; sums run over the whole dataloader, so batches of unequal size weigh by their
    tokens (not a mean of per-batch means). Returns {"loss", "perplexity", "tokens"}; the model's
    train/eval mode is restored afterwards.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    total_nll, total_tokens = 0.0, 0
    try:
        for batch in tqdm(dataloader, desc="perplexity", disable=not progress, leave=False):
            if isinstance(batch, torch.Tensor):
                batch = {"input_ids": batch}
            input_ids = batch["input_ids"].to(device)
            attention_mask = batch.get("attention_mask")
            attention_mask = attention_mask.to(device) if attention_mask is not None else None
            labels = batch["labels"].to(device) if "labels" in batch else input_ids
            outputs = model(input_ids=input_ids, attention_mask=attention_mask)
            logits = outputs.logits if hasattr(outputs, "logits") else outputs[0]
            shifted_logits = logits[:, :-1].float()
            shifted_labels = labels[:, 1:]
            total_nll += F.cross_entropy(
                shifted_logits.reshape(-1, shifted_logits.size(-1)),
                shifted_labels.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            ).item()
            total_tokens += int((shifted_labels != IGNORE_INDEX).sum().item())
    finally:
        model.train(was_training)
    if total_tokens == 0:
        raise DataError("the dataloader holds no token to score (every block has fewer than 2 tokens)")
    loss = total_nll / total_tokens
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": total_tokens}
