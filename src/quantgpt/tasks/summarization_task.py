"""Abstractive summarization as a training `Task`: BART on XSum, scored by ROUGE-1/2/L.

A thin adapter over `summarization` (records, tokenization, beam search, ROUGE). Fine-tuning
minimizes the summary's next-token cross-entropy. Distillation (Eq. 4, 5 in docs/method.md) uses the decoder's
LM logits over the summary tokens, and the token-level contrastive loss on the hidden states of
the decoder (the method; `ContrastiveConfig.layer` picks the last or the first layer) or of the
encoder over the article's tokens (`contrastive_states="encoder"`, the paper's Table 6 ablation).
Evaluation generates summaries by beam search (6 beams, length penalty 1: Appendix B.3) and scores
them with ROUGE; it also reports the teacher-forced loss of the reference summaries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import Tensor, nn
from torch.utils.data import DataLoader
from transformers import BartForConditionalGeneration
from transformers.models.bart.modeling_bart import shift_tokens_right

from quantgpt.tasks.summarization import (
    IGNORE_INDEX,
    ROUGE_TYPES,
    generate_summaries,
    load_xsum,
    load_xsum_jsonl,
    make_summarization_collator,
    rouge_scores,
    tokenize_summarization,
)
from quantgpt.errors import ConfigError
from quantgpt.settings import setting, validate
from quantgpt.tasks.errors import DataError
from quantgpt.tasks.text_datasets import data_file_for
from quantgpt.tokenization import load_bart_tokenizer
from quantgpt.training.task import DistillTargets, Task
from quantgpt.validators import integer, number, one_of, optional

CONTRASTIVE_STATES = ("decoder", "encoder")
MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")


def seq2seq_distill_targets(outputs: Any, batch: dict[str, Tensor], states: str = "decoder") -> DistillTargets:
    """What an encoder-decoder distills on a batch.

    Logits: the decoder's `(B, T, V)` LM logits over the summary's real positions. Hidden states
    (for the contrastive loss and hidden-state MSE): with states="decoder", the decoder's tuple with
    the decoder's input ids and mask (the token whose representation each position is); with
    "encoder", the encoder's tuple with the article's ids and mask.
    """
    if states not in CONTRASTIVE_STATES:
        raise ConfigError(f"states={states!r}: allowed are {', '.join(CONTRASTIVE_STATES)}")
    decoder_mask = batch["decoder_attention_mask"]
    if states == "decoder":
        hidden, token_ids, token_mask = outputs.decoder_hidden_states, batch["decoder_input_ids"], decoder_mask
    else:
        hidden, token_ids, token_mask = outputs.encoder_hidden_states, batch["input_ids"], batch["attention_mask"]
    return DistillTargets(
        logits=[(outputs.logits, decoder_mask.bool())],
        hidden_states=hidden,
        token_ids=token_ids,
        token_mask=token_mask,
    )


class SummarizationCollator:
    """Pads tokenized records and adds the decoder's inputs: `decoder_input_ids` (the labels shifted
    right after the decoder start token, padding as pad) and `decoder_attention_mask` (1 where a
    label exists). With them in the batch the loop can call the model without labels."""

    def __init__(self, tokenizer: Any, decoder_start_token_id: int) -> None:
        self.pad = make_summarization_collator(tokenizer)
        self.pad_token_id = tokenizer.pad_token_id
        self.decoder_start_token_id = decoder_start_token_id

    def __call__(self, records: list[dict[str, Any]]) -> dict[str, Tensor]:
        batch = dict(self.pad(records))
        labels = batch["labels"]
        batch["decoder_input_ids"] = shift_tokens_right(labels, self.pad_token_id, self.decoder_start_token_id)
        batch["decoder_attention_mask"] = (labels != IGNORE_INDEX).long()
        return batch


@dataclass(frozen=True)
class SummarizationOptions:
    """Summarization (--task xsum).

    max_source_length: article tokens (paper: 512). max_target_length: summary tokens kept for
    training (choice: 128; summaries are padded to the longest of the batch, as the paper).
    contrastive_states: "decoder" (the method) or "encoder" (Table 6). num_beams, length_penalty,
    max_new_tokens, no_repeat_ngram_size: beam search (paper: 6 beams, length penalty 1; 60 new
    tokens is fairseq's XSum limit; no_repeat_ngram_size None keeps the model's generation config).
    """

    max_source_length: int = setting(512, integer(1), "article tokens")
    max_target_length: int = setting(128, integer(1), "summary tokens for training")
    contrastive_states: str = setting(
        "decoder", one_of(CONTRASTIVE_STATES),
        "hidden states of the contrastive loss: decoder (summary tokens) or encoder (article tokens)",
    )
    num_beams: int = setting(6, integer(1), "beam size of generation")
    length_penalty: float = setting(1.0, number(), "beam search length penalty")
    max_new_tokens: int = setting(60, integer(1), "longest generated summary")
    no_repeat_ngram_size: int | None = setting(
        None, optional(integer(0)), "forbid repeated n-grams in generation (default: the model's setting)"
    )

    def __post_init__(self) -> None:
        validate(self)


class SummarizationTask(Task):
    """Abstractive summarization on XSum with BART (docs/method.md#tasks-and-training-settings).

    tokenizer: BART's. Options: `SummarizationOptions` and `DataOptions` (data_dir: the folder
    holding `xsum/`, e.g. ../shared/data, local splits named by file: "sample", "test-1000"; None
    reads the hub: "train", "validation", "test"; data files: your own JSON lines by split, records
    with "document" and "summary", read instead of XSum), by keyword.
    """

    name = "xsum"
    primary_metric = "rouge2"
    greater_is_better = True
    task_loss_is_nll = True
    options_class = SummarizationOptions

    def __init__(self, tokenizer: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(tokenizer, *args, **kwargs)
        # BART starts decoding with </s>; prepare_model takes the model's own value.
        self.collator = SummarizationCollator(tokenizer, decoder_start_token_id=tokenizer.eos_token_id)
        self._records: dict[str, Dataset] = {}
        self._tokenized: dict[str, Dataset] = {}

    # --- model
    def model_class(self) -> Any:
        return BartForConditionalGeneration

    def prepare_model(self, model: nn.Module) -> None:
        """Take the model's decoder start token for the decoder inputs the collator builds."""
        start = getattr(model.config, "decoder_start_token_id", None)
        if start is not None:
            self.collator.decoder_start_token_id = start

    # --- data
    def records(self, split: str, cap: int | None) -> Dataset:
        """The first `cap` (all when None) document/summary records of `split`, loaded once."""
        if split not in self._records:
            try:
                if self.data_options.data_files:
                    self._records[split] = load_xsum_jsonl(data_file_for(self.data_options.data_files, split))
                else:
                    self._records[split] = load_xsum(split, self.data_options.data_dir)
            except OSError as error:  # the hub out of reach (local files raise DataError instead)
                raise DataError(
                    f"could not read XSum {split} from the hub ({str(error).splitlines()[0]}); "
                    "pass --data-dir with local files (e.g. ../shared/data)"
                ) from None
        records = self._records[split]
        return records.select(range(min(cap, len(records)))) if cap is not None else records

    def _tokenized_split(self, split: str, cap: int | None) -> Dataset:
        key = f"{split}:{cap}"
        if key not in self._tokenized:
            self._tokenized[key] = tokenize_summarization(
                self.records(split, cap), self.tokenizer, self.options.max_source_length, self.options.max_target_length
            )
        return self._tokenized[key]

    def train_dataset(self) -> Dataset:
        return self._tokenized_split(self.data_options.train_split, self.data_options.max_train_examples)

    def eval_dataset(self, split: str) -> Dataset:
        return self._tokenized_split(split, self.data_options.max_eval_examples)

    def collate(self, examples: list[Any]) -> dict[str, Tensor]:
        return self.collator(examples)

    def model_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {key: batch[key] for key in MODEL_INPUT_KEYS}

    def num_tokens(self, batch: dict[str, Any]) -> int:
        """Article and summary tokens: both are processed each step."""
        return int(batch["attention_mask"].sum() + batch["decoder_attention_mask"].sum())

    # --- losses
    def task_loss(self, outputs: Any, batch: dict[str, Any]) -> Tensor:
        """Mean cross-entropy of the summary tokens (the decoder's logits at i predict label i)."""
        logits = outputs.logits.float()
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch["labels"].reshape(-1), ignore_index=IGNORE_INDEX)

    def distill_targets(self, outputs: Any, batch: dict[str, Any]) -> DistillTargets:
        return seq2seq_distill_targets(outputs, batch, self.options.contrastive_states)

    # --- metric
    @torch.no_grad()
    def _reference_loss(self, model: nn.Module, dataset: Dataset, device: torch.device) -> tuple[float, int]:
        """(summed NLL, token count) of the reference summaries under teacher forcing."""
        nll, tokens = 0.0, 0
        was_training = model.training
        model.eval()
        try:
            for batch in DataLoader(dataset, batch_size=self.data_options.eval_batch_size, collate_fn=self.collate):
                batch = {key: value.to(device) for key, value in batch.items()}
                logits = model(**self.model_inputs(batch)).logits.float()
                labels = batch["labels"]
                flat_logits, flat_labels = logits.reshape(-1, logits.size(-1)), labels.reshape(-1)
                nll += float(F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE_INDEX, reduction="sum"))
                tokens += int((labels != IGNORE_INDEX).sum())
        finally:
            model.train(was_training)
        return nll, tokens

    def evaluate(self, model: nn.Module, split: str, accelerator: Any) -> dict[str, float]:
        """ROUGE-1/2/L (F-measures x 100, means over the documents) of beam-search summaries of
        `split`, and the reference summaries' mean token loss.

        Each process summarizes the documents `rank, rank + N, ...` and the sums are added up, so
        the result is the same on every process and equals a one-process evaluation.
        """
        records = self.records(split, self.data_options.max_eval_examples)
        rank, world = accelerator.process_index, accelerator.num_processes
        indices = list(range(rank, len(records), world))
        sums = dict.fromkeys(ROUGE_TYPES, 0.0)
        nll, tokens = 0.0, 0
        if indices:
            shard = records.select(indices)
            generation = {} if self.options.no_repeat_ngram_size is None else {"no_repeat_ngram_size": self.options.no_repeat_ngram_size}
            summaries = generate_summaries(
                model,
                self.tokenizer,
                list(shard["document"]),
                num_beams=self.options.num_beams,
                length_penalty=self.options.length_penalty,
                max_new_tokens=self.options.max_new_tokens,
                batch_size=self.data_options.eval_batch_size,
                max_source_length=self.options.max_source_length,
                device=accelerator.device,
                progress=self.eval_progress and accelerator.is_main_process,
                **generation,
            )
            means = rouge_scores(summaries, list(shard["summary"]))
            sums = {key: value * len(indices) for key, value in means.items()}
            nll, tokens = self._reference_loss(model, self.eval_dataset(split).select(indices), accelerator.device)
        totals = torch.tensor(
            [*(sums[key] for key in ROUGE_TYPES), nll, float(tokens), float(len(indices))],
            dtype=torch.float64,
            device=accelerator.device,
        )
        if world > 1:
            totals = accelerator.reduce(totals, reduction="sum")
        count = float(totals[-1])
        if count == 0:
            raise DataError(f"split {split!r} holds no document to summarize")
        result = {key: float(totals[i]) / count for i, key in enumerate(ROUGE_TYPES)}
        loss = float(totals[-3] / totals[-2]) if totals[-2] > 0 else math.nan
        return {**result, "loss": loss, "examples": int(count)}

    # --- tokenizer (settings, record and flags: SummarizationOptions and DataOptions, through Task)
    @classmethod
    def load_tokenizer(cls, name_or_path: str) -> Any:
        """BART's tokenizer; a GPT-2 BPE directory with fairseq's dictionary gives it offline."""
        return load_bart_tokenizer(name_or_path)
