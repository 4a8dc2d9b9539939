"""Abstractive summarization on XSum with BART: records, batches, beam-search summaries, ROUGE.

docs/method.md#tasks-and-training-settings: source length 512, beam search with 6 beams and length penalty 1, ROUGE-1/2/L.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerBase

from quantgpt.tasks.errors import DataError
from quantgpt.tasks.jsonl import read_json_lines
from quantgpt.config import ConfigError

IGNORE_INDEX = -100
HUB_DATASET = "EdinburghNLP/xsum"
RECORD_FIELDS = ("document", "summary")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
# The CPU testbed's splits of the 1,000 local XSum pairs (../shared/data/xsum/test-1000.jsonl, in
# file order): fine-tuning on the first 85%, model selection on the next 5% (together the 900 pairs
# the model learns from), ROUGE on the last 10% (100 pairs).
TESTBED_SOURCE = "test-1000"
# The paper's beam search (docs/method.md#tasks-and-training-settings).
NUM_BEAMS = 6
LENGTH_PENALTY = 1.0
TESTBED_SLICES = {"testbed-train": (0.0, 0.85), "testbed-select": (0.85, 0.9), "testbed-test": (0.9, 1.0)}


def load_xsum_jsonl(path: str | Path) -> Dataset:
    """XSum records from a JSON-lines file of objects with "document" and "summary" (other keys kept)."""
    path = Path(path)
    records = []
    for number, record in read_json_lines(path):
        if not isinstance(record, dict) or not all(isinstance(record.get(field), str) for field in RECORD_FIELDS):
            raise DataError(f"{path}:{number}: expected an object with string fields 'document' and 'summary'")
        records.append(record)
    if not records:
        raise DataError(f"{path}: expected XSum records, found none")
    return Dataset.from_list(records)


def load_xsum(split: str = "test", data_dir: str | Path | None = None) -> Dataset:
    """One split of XSum as a Dataset with columns "document", "summary" (and "id" where given).

    data_dir (e.g. ../shared/data): reads `xsum/<split>.jsonl`, so local splits are named by file
    ("sample", "test-1000"), or the CPU testbed's slices of test-1000 ("testbed-train",
    "testbed-select", "testbed-test": `TESTBED_SLICES`). data_dir=None: the hub's EdinburghNLP/xsum
    ("train", "validation", "test").
    """
    if data_dir is not None and split in TESTBED_SLICES:
        records = load_xsum(TESTBED_SOURCE, data_dir)
        start, end = (round(fraction * len(records)) for fraction in TESTBED_SLICES[split])
        return records.select(range(start, end))
    if data_dir is None:
        from datasets import load_dataset

        return load_dataset(HUB_DATASET, split=split)
    folder = Path(data_dir) / "xsum"
    path = folder / f"{split}.jsonl"
    if not path.is_file():
        found = sorted(file.stem for file in folder.glob("*.jsonl")) if folder.is_dir() else []
        raise DataError(f"{path}: file not found (local XSum splits: {', '.join(found) or 'none'})")
    return load_xsum_jsonl(path)


def tokenize_summarization(
    records: Dataset | Sequence[Mapping[str, str]],
    tokenizer: PreTrainedTokenizerBase,
    max_source_length: int = 512,
    max_target_length: int = 64,
) -> Dataset:
    """Tokenized records: a Dataset with "input_ids", "attention_mask" (the document, truncated to
    max_source_length) and "labels" (the summary, truncated to max_target_length), as lists;
    `make_summarization_collator` pads them."""
    if not isinstance(records, Dataset):
        records = Dataset.from_list([dict(record) for record in records])

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(batch["document"], max_length=max_source_length, truncation=True)
        encoded["labels"] = tokenizer(text_target=batch["summary"], max_length=max_target_length, truncation=True)[
            "input_ids"
        ]
        return dict(encoded)

    return records.map(tokenize, batched=True, remove_columns=records.column_names)


def make_summarization_collator(
    tokenizer: PreTrainedTokenizerBase, model: torch.nn.Module | None = None
) -> DataCollatorForSeq2Seq:
    """Pads tokenized records into tensors for `BartForConditionalGeneration`: input_ids with the
    pad id, labels with -100 (never scored); with a model, also its `decoder_input_ids`."""
    return DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=IGNORE_INDEX, return_tensors="pt")


@torch.no_grad()
def generate_summaries(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    documents: Sequence[str],
    num_beams: int = NUM_BEAMS,
    length_penalty: float = LENGTH_PENALTY,
    max_new_tokens: int = 60,
    batch_size: int = 8,
    max_source_length: int = 512,
    device: torch.device | str | None = None,
    progress: bool = True,
    **generate_kwargs,
) -> list[str]:
    """One summary per document by beam search (`model.generate`), decoded without special tokens.

    Defaults follow docs/method.md#tasks-and-training-settings (6 beams, length penalty 1); max_new_tokens=60 is fairseq's
    XSum limit. Other generation options (fairseq's recipe also used min_length and
    no_repeat_ngram_size=3) pass through `generate_kwargs`. The model's mode is restored.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} is invalid; allowed: an integer >= 1")
    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    summaries: list[str] = []
    try:
        for start in tqdm(range(0, len(documents), batch_size), desc="summaries", disable=not progress, leave=False):
            batch = tokenizer(
                list(documents[start : start + batch_size]),
                max_length=max_source_length,
                truncation=True,
                padding=True,
                return_tensors="pt",
            ).to(device)
            generated = model.generate(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                num_beams=num_beams,
                length_penalty=length_penalty,
                max_new_tokens=max_new_tokens,
                **generate_kwargs,
            )
            summaries.extend(text.strip() for text in tokenizer.batch_decode(generated, skip_special_tokens=True))
    finally:
        model.train(was_training)
    return summaries


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F-measures over the pairs, times 100.

    Computed by `rouge_score` with its Porter stemmer (lower-cased, non-alphanumerics dropped);
    ROUGE-L is the sentence-level LCS score.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references; they must pair up")
    if not predictions:
        raise ValueError("no prediction to score")
    from rouge_score import rouge_scorer  # imported here: it pulls in nltk (~1.5 s) for every command

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, reference in zip(predictions, references, strict=True):
        scores = scorer.score(reference, prediction)  # rouge_score takes (target, prediction)
        for rouge_type in ROUGE_TYPES:
            totals[rouge_type] += scores[rouge_type].fmeasure
    return {rouge_type: 100.0 * total / len(predictions) for rouge_type, total in totals.items()}
