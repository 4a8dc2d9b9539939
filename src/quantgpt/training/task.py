"""The interface a task implements so that the one training loop can fine-tune and distill on it.

The loop never looks inside a batch: it asks the task for the model's keyword arguments, the task
loss (fine-tuning), the tensors to distill (QAT) and the evaluation metric. A task therefore brings
its own data, batching, model class and metric: causal language modelling, a double-head GPT-2
(LM and multiple-choice logits), an encoder-decoder such as BART (decoder hidden states), ...

A minimal task, in the order the loop calls it::

    class MyTask(Task):
        name = "mytask"; primary_metric = "accuracy"; greater_is_better = True
        def model_class(self): return GPT2DoubleHeadsModel
        def train_dataset(self): ...            # torch Dataset of examples
        def eval_dataset(self, split): ...
        def collate(self, examples): ...        # -> dict of tensors (the batch)
        def model_inputs(self, batch): ...      # -> kwargs of model(**)
        def task_loss(self, outputs, batch): ...
        def distill_targets(self, outputs, batch): ...   # -> DistillTargets
        def evaluate(self, model, split, accelerator): ...  # -> {"accuracy": ..., ...}

Tasks are registered by name in `TASKS` (a "module:Class" string, imported on first use) so that
the command line can build them from flags: see `Task.add_arguments` and `Task.from_args`.
"""

from __future__ import annotations

import argparse
import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from ..config import ConfigError

# Task name -> "module:Class". Other tasks add a line here.
TASKS: dict[str, str] = {
    "lm": "quantgpt.tasks.lm_task:LanguageModelingTask",
    "personachat": "quantgpt.tasks.personachat_task:PersonaChatTask",
    "xsum": "quantgpt.tasks.summarization_task:SummarizationTask",
}


@dataclass
class DistillTargets:
    """What one network (student or teacher) produced on a batch, in the form the losses take.

    logits: pairs `(logits (..., C), mask (...) or None)`; the distillation loss is the sum over
        pairs of the soft cross-entropy (SPEC Eq. 4) between student and teacher, over positions
        where the mask is true. Language modelling has one pair `(B, L, V)` logits with the
        attention mask; a double-head GPT-2 has two (LM logits, and multiple-choice logits `(B, N)`
        with mask None); BART has the decoder's LM logits with the decoder mask.
    hidden_states: the model's hidden-state tuple (embeddings output first, then one entry per
        layer, each `(B, L, H)`): `ContrastiveConfig.layer` picks the one contrasted (SPEC Eq. 2),
        and hidden-state distillation matches all of them. For BART, the decoder's (an encoder
        ablation may return the encoder's, with the encoder's token ids below).
    token_ids / token_mask: `(B, L)` token ids of the positions of `hidden_states` (the memory banks
        are indexed by them) and 1 for real tokens, 0 for padding (no loss on padding).
    """

    logits: Sequence[tuple[Tensor, Tensor | None]]
    hidden_states: Sequence[Tensor] | None = None
    token_ids: Tensor | None = None
    token_mask: Tensor | None = None


class Task(ABC):
    """A task the training loop can run; subclasses fill in the abstract methods.

    Class attributes:
      name: the registry key (`--task NAME`).
      primary_metric: the key of `evaluate`'s result that picks the best checkpoint.
      greater_is_better: direction of `primary_metric` (False for perplexity).
      task_loss_is_nll: True when `task_loss` is a token-level negative log-likelihood, so that the
        progress bar can show `exp(task_loss)` as perplexity.
    Instance attribute `tokenizer`: the tokenizer the data was made with; saved beside `best/`.
    """

    name: ClassVar[str]
    primary_metric: ClassVar[str]
    greater_is_better: ClassVar[bool]
    task_loss_is_nll: ClassVar[bool] = False

    tokenizer: Any

    # --- model -------------------------------------------------------------------------------
    @abstractmethod
    def model_class(self) -> Any:
        """The Transformers class for this task's model: an Auto class (`AutoModelForCausalLM`) or a
        concrete one (`GPT2DoubleHeadsModel`). Used for `from_pretrained(dir)` and fresh configs."""

    def prepare_model(self, model: nn.Module) -> None:
        """Adapt a full-precision model to the task before training or quantizing (e.g. resize
        the embeddings for added special tokens). Must be idempotent; default: nothing."""

    # --- data --------------------------------------------------------------------------------
    @abstractmethod
    def train_dataset(self) -> Dataset:
        """The training examples (a map-style Dataset; the loop shuffles it per epoch, seeded)."""

    @abstractmethod
    def eval_dataset(self, split: str) -> Dataset:
        """The examples of `split` (raise DataError / ValueError with one line when unknown or missing)."""

    @abstractmethod
    def collate(self, examples: list[Any]) -> dict[str, Any]:
        """Examples -> a batch: a dict whose tensors the loop moves to the device (other values stay)."""

    def model_inputs(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments of `model(**)` for a batch (no labels: losses are computed by the task).
        The loop adds `output_hidden_states=True` when an objective needs hidden states."""
        return {key: batch[key] for key in ("input_ids", "attention_mask") if key in batch}

    def num_tokens(self, batch: Mapping[str, Any]) -> int:
        """Tokens in the batch, for the tokens/s figure (default: the attention mask's sum)."""
        mask = batch.get("attention_mask")
        return int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())

    # --- losses ------------------------------------------------------------------------------
    @abstractmethod
    def task_loss(self, outputs: Any, batch: Mapping[str, Any]) -> Tensor:
        """The scalar fine-tuning loss of the model's `outputs` on `batch` (e.g. next-token NLL)."""

    @abstractmethod
    def distill_targets(self, outputs: Any, batch: Mapping[str, Any]) -> DistillTargets:
        """The logits (and hidden states, token ids, mask) of `outputs` to distill; called on the
        student's and on the teacher's outputs of the same batch, so both must line up."""

    # --- metric ------------------------------------------------------------------------------
    @abstractmethod
    def evaluate(self, model: nn.Module, split: str, accelerator: Any) -> dict[str, float]:
        """Evaluate an unwrapped model on `split`; returns at least `{primary_metric: value}`.

        Called on every process at once; a task may shard the split over
        `accelerator.num_processes` and reduce (all processes must get the same result), or
        evaluate the whole split on each process. Runs under no_grad in eval mode and restores
        the model's mode.
        """

    # --- run record and command line ---------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """JSON-ready settings of the task, recorded in run_config.json."""
        return {"name": self.name}

    @classmethod
    def load_tokenizer(cls, name_or_path: str) -> Any:
        """The tokenizer from a local directory or hub name (default: AutoTokenizer)."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name_or_path)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add the task's own flags. Flags shared by all tasks (`--data-dir`, `--train-split`,
        `--max-train-examples`, `--max-eval-examples`, `--eval-batch-size`) already exist."""

    @classmethod
    @abstractmethod
    def from_args(cls, args: argparse.Namespace, tokenizer: Any) -> "Task":
        """Build the task from parsed command-line flags and a tokenizer."""


def task_class(name: str) -> type[Task]:
    """The registered Task class called `name`."""
    if name not in TASKS:
        raise ConfigError(f"task={name!r} is unknown: allowed are {', '.join(TASKS)}")
    module_name, _, class_name = TASKS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def move_to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch with every tensor on `device` (other values as they are)."""
    return {key: value.to(device) if isinstance(value, Tensor) else value for key, value in batch.items()}
