"""The interface a task implements so that the one training loop can fine-tune and distill on it.

The loop never looks inside a batch: it asks the task for the model's keyword arguments, the task
loss (fine-tuning), the tensors to distill (QAT) and the evaluation metric. A task therefore brings
its own data, batching, model class and metric: causal language modelling, a double-head GPT-2
(LM and multiple-choice logits), an encoder-decoder such as BART (decoder hidden states), ...

A minimal task, in the order the loop calls it::

    @dataclass(frozen=True)
    class MyOptions:                           # its docstring's first line titles the flags in --help
        max_length: int = setting(512, integer(8), "tokens per example")
        def __post_init__(self): validate(self)

    class MyTask(Task):
        name = "mytask"; primary_metric = "accuracy"; greater_is_better = True
        options_class = MyOptions              # --max-length, YAML max_length, MyTask(tok, max_length=256)
        def model_class(self): return GPT2DoubleHeadsModel
        def train_dataset(self): ...            # torch Dataset of examples
        def eval_dataset(self, split): ...
        def collate(self, examples): ...        # -> dict of tensors (the batch)
        def model_inputs(self, batch): ...      # -> kwargs of model(**)
        def task_loss(self, outputs, batch): ...
        def distill_targets(self, outputs, batch): ...   # -> DistillTargets
        def evaluate(self, model, split, accelerator): ...  # -> {"accuracy": ..., ...}

Tasks are registered by name in `TASKS` (a "module:Class" string, imported on first use) so that
the command line can build them from flags: `Task.add_arguments`, `Task.from_args` and
`Task.config` derive the flags, the construction and the run record from `options_class` and
`DataOptions`, so a task option is declared once, in its dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from .. import settings
from ..errors import ConfigError, MissingInputError, UsageError
from ..settings import setting, validate
from ..validators import integer, optional, path, text

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
        pairs of the soft cross-entropy (Eq. 4 in docs/method.md) between student and teacher, over positions
        where the mask is true. Language modelling has one pair `(B, L, V)` logits with the
        attention mask; a double-head GPT-2 has two (LM logits, and multiple-choice logits `(B, N)`
        with mask None); BART has the decoder's LM logits with the decoder mask.
    hidden_states: the model's hidden-state tuple (embeddings output first, then one entry per
        layer, each `(B, L, H)`): `ContrastiveConfig.layer` picks the one contrasted (Eq. 2 in docs/method.md),
        and hidden-state distillation matches all of them. For BART, the decoder's (an encoder
        ablation may return the encoder's, with the encoder's token ids below).
    token_ids / token_mask: `(B, L)` token ids of the positions of `hidden_states` (the memory banks
        are indexed by them) and 1 for real tokens, 0 for padding (no loss on padding).
    """

    logits: Sequence[tuple[Tensor, Tensor | None]]
    hidden_states: Sequence[Tensor] | None = None
    token_ids: Tensor | None = None
    token_mask: Tensor | None = None


@dataclass(frozen=True)
class NoOptions:
    """A task without options of its own."""


class Task(ABC):
    """A task the training loop can run; subclasses fill in the abstract methods.

    Class attributes:
      name: the registry key (`--task NAME`).
      primary_metric: the key of `evaluate`'s result that picks the best checkpoint.
      greater_is_better: direction of `primary_metric` (False for perplexity).
      task_loss_is_nll: True when `task_loss` is a token-level negative log-likelihood, so that the
        progress bar can show `exp(task_loss)` as perplexity.
      options_class: a frozen settings dataclass (`quantgpt.settings.setting` fields) of the task's
        own options: one declaration gives the constructor keyword, its check, the flag
        (`--block-size`), the YAML key (`block_size`) and the run record's entry. The options every
        task shares (data folder, training split, data files, caps, evaluation batch) are
        `DataOptions`.
      positional: the options that may also be given by position after the tokenizer.
    Instance attributes: `tokenizer`, the tokenizer the data was made with (saved beside `best/`);
    `options` and `data_options`, the settings (also readable as attributes: `task.block_size`);
    `eval_progress`, whether `evaluate` shows a progress bar.
    """

    name: ClassVar[str]
    primary_metric: ClassVar[str]
    greater_is_better: ClassVar[bool]
    task_loss_is_nll: ClassVar[bool] = False
    options_class: ClassVar[type] = NoOptions
    positional: ClassVar[tuple[str, ...]] = ()

    tokenizer: Any
    options: Any
    data_options: "DataOptions"

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

    def sharded_sums(self, split: str, accelerator: Any, score: Any) -> Tensor:
        """Two sums (e.g. NLL and tokens) over `split`, each process scoring the examples `rank,
        rank + N, ...` with `score(loader, show_progress) -> (sum, count)` and the sums added up,
        so the result is the same on every process and equals a one-process evaluation."""
        dataset = self.eval_dataset(split)
        rank, world = accelerator.process_index, accelerator.num_processes
        shard = Subset(dataset, range(rank, len(dataset), world))
        sums = (0.0, 0.0)
        if len(shard):
            loader = DataLoader(shard, batch_size=self.data_options.eval_batch_size, collate_fn=self.collate)
            sums = score(loader, self.eval_progress and accelerator.is_main_process)
        totals = torch.tensor([float(sums[0]), float(sums[1])], dtype=torch.float64, device=accelerator.device)
        if world > 1:
            totals = accelerator.reduce(totals, reduction="sum")
        return totals

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

    # --- settings, run record and command line ---------------------------------------------------
    def __init__(
        self,
        tokenizer: Any,
        *args: Any,
        options: Any = None,
        data_options: "DataOptions | None" = None,
        eval_progress: bool = False,
        **kwargs: Any,
    ) -> None:
        """Settings from `options` (an `options_class`) and `data_options` (a `DataOptions`), any
        field of either also by keyword (`block_size=128`; an old flag spelling too, e.g.
        `max_train_blocks`), the first ones of `positional` by position; `data_files` ({split:
        path}) sets `train_file` / `eval_file` / `test_file`. Subclasses call this first, then set
        up what they need."""
        if len(args) > len(self.positional):
            raise TypeError(f"{type(self).__name__}() takes {len(self.positional)} options by position: {', '.join(self.positional)}")
        for name, value in zip(self.positional, args):
            if name in kwargs:
                raise TypeError(f"{type(self).__name__}() got two values for {name!r}")
            kwargs[name] = value
        if "data_files" in kwargs:
            kwargs.update(data_file_options(kwargs.pop("data_files")))
        option_fields, data_fields = _field_names(self.options_class), _field_names(DataOptions)
        chosen: dict[str, dict[str, Any]] = {"options": {}, "data": {}}
        for key, value in kwargs.items():
            if key in option_fields:
                chosen["options"][option_fields[key]] = value
            elif key in data_fields:
                chosen["data"][data_fields[key]] = value
            else:
                allowed = sorted({*option_fields.values(), *data_fields.values(), "data_files", "eval_progress"})
                raise TypeError(f"{type(self).__name__}() got an unexpected option {key!r}: allowed are {', '.join(allowed)}")
        self.options = _built(self.options_class, options, chosen["options"])
        self.data_options = _built(DataOptions, data_options, chosen["data"])
        if self.data_options.data_dir is not None and not Path(self.data_options.data_dir).is_dir():
            raise MissingInputError(f"--data-dir {self.data_options.data_dir}: no such directory")
        self.tokenizer = tokenizer
        self.eval_progress = eval_progress

    def __getattr__(self, name: str) -> Any:
        """A setting read as an attribute (`task.block_size`, `task.max_train_blocks`), as before the
        settings became dataclasses."""
        if name.startswith("__") or name in ("options", "data_options"):
            raise AttributeError(name)
        for holder in (self.__dict__.get("options"), self.__dict__.get("data_options")):
            if holder is not None:
                field = _field_names(type(holder)).get(name)
                if field is not None:
                    return getattr(holder, field)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def config(self) -> dict[str, Any]:
        """JSON-ready settings of the task, recorded in run_config.json: the name, every task
        option and every data option."""
        return {"name": self.name, **settings.to_dict(self.options), **self.data_options.to_dict()}

    @classmethod
    def load_tokenizer(cls, name_or_path: str) -> Any:
        """The tokenizer from a local directory or hub name (default: AutoTokenizer)."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name_or_path)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One flag per field of `options_class`, in a group named by its docstring's first line. The
        flags of `DataOptions` are added once for all tasks (commands/finetune.py). A flag no task
        option was given for is left out of the namespace (the option keeps its default), so two
        tasks may share an option name; a field another task already made a flag of is skipped."""
        taken = {action.dest for action in parser._actions}
        doc = (cls.options_class.__doc__ or "").strip()
        title = doc.splitlines()[0].rstrip(".") if doc and not doc.startswith(cls.options_class.__name__ + "(") else ""
        settings.add_arguments(
            parser, cls.options_class, title=title or f"--task {cls.name}", inherit=True,
            skip=tuple(name for name in _field_names(cls.options_class).values() if name in taken),
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace, tokenizer: Any) -> "Task":
        """The task from parsed command-line flags (or YAML keys) and a tokenizer."""
        return cls(
            tokenizer,
            options=settings.from_args(cls.options_class, args),
            data_options=settings.from_args(DataOptions, args),
        )


# {split: DataOptions field} of the user's own data files.
DATA_FILE_FIELDS = {"train": "train_file", "valid": "eval_file", "test": "test_file"}


@dataclass(frozen=True)
class DataOptions:
    """Where every task's data is and how much of it is read (flags shared by all tasks)."""

    data_dir: str | None = setting(
        None, optional(path()), "local data folder, e.g. ../shared/data (default: the hub through datasets)"
    )
    train_split: str = setting("train", text(), "training split (CPU testbed for WikiText-2: testbed-train)")
    train_file: str | None = setting(
        None, optional(path()), "your training data: plain text, or JSON lines (.jsonl) with --text-column"
    )
    eval_file: str | None = setting(None, optional(path()), "your model-selection data (the valid split), same format")
    test_file: str | None = setting(None, optional(path()), "your test data (the test split), same format")
    max_train_examples: int | None = setting(
        None, optional(integer(1)), "cap the training examples (blocks for lm)", flags=("--max-train-blocks",)
    )
    max_eval_examples: int | None = setting(
        None, optional(integer(1)), "cap the examples of each evaluated split (blocks for lm)", flags=("--max-eval-blocks",)
    )
    eval_batch_size: int = setting(8, integer(1), "examples per evaluation batch")

    def __post_init__(self) -> None:
        validate(self)

    @property
    def data_files(self) -> dict[str, str]:
        """{split: path} of the data files given (`train`, `valid`, `test`)."""
        files = {split: getattr(self, name) for split, name in DATA_FILE_FIELDS.items()}
        return {split: file for split, file in files.items() if file is not None}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, the data files as one {split: path} mapping."""
        record = {key: value for key, value in settings.to_dict(self).items() if key not in DATA_FILE_FIELDS.values()}
        return {**record, "data_files": self.data_files}


def data_file_options(data_files: Mapping[str, Any] | None) -> dict[str, Any]:
    """{split: path} (the Python API's `data_files`) as `DataOptions` fields."""
    data_files = dict(data_files or {})
    unknown = sorted(set(data_files) - set(DATA_FILE_FIELDS))
    if unknown:
        raise UsageError(f"data_files has splits {unknown}: allowed are {', '.join(DATA_FILE_FIELDS)}")
    return {DATA_FILE_FIELDS[split]: file for split, file in data_files.items()}


def _field_names(cls: type) -> dict[str, str]:
    """{field name or old flag spelling: field name} of a settings dataclass."""
    return {**settings.aliases(cls), **{field.name: field.name for field in dataclasses.fields(cls)}}


def _built(cls: type, given: Any, changes: dict[str, Any]) -> Any:
    if given is None:
        return cls(**changes)
    if not isinstance(given, cls):
        raise TypeError(f"{given!r} is not a {cls.__name__}")
    return dataclasses.replace(given, **changes) if changes else given


def task_class(name: str) -> type[Task]:
    """The registered Task class called `name`."""
    if name not in TASKS:
        raise ConfigError(f"task={name!r} is unknown: allowed are {', '.join(TASKS)}")
    module_name, _, class_name = TASKS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def move_to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch with every tensor on `device` (other values as they are)."""
    return {key: value.to(device) if isinstance(value, Tensor) else value for key, value in batch.items()}
