"""Next-utterance prediction as a training `Task`: double-head GPT-2 on Persona-Chat, scored by hits@1.

A thin adapter over `personachat` (examples, double-head inputs, hits@1). Fine-tuning the teacher
minimizes `lm_coef * L_lm + mc_coef * L_mc` (the reply's next-token NLL and the choice of the true
reply among the candidates). Distillation (Eq. 4, 5 in docs/method.md; Appendix B.5) covers both heads: soft
cross-entropy on the LM logits and on the multiple-choice logits, and the token-level contrastive
loss on the last layer's hidden states.

Which sequences are distilled (`distill_candidates`, a choice the paper leaves open):
  * "true" (default): the true reply's sequence only, every real position (persona, history and
    reply). The context is the same for every candidate and GPT-2 is causal, so the LM logits and
    hidden states of the context positions are identical across candidates: distilling them N
    times only re-weights the context against the reply. The distractors' reply positions are
    texts the LM head is never trained on. And it keeps one `(B, L, V)` soft-max pair instead of N.
  * "all": every candidate's sequence (`(B * N, L, ...)`), for comparison.
The multiple-choice logits `(B, N)` are distilled over all candidates in both cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from transformers import GPT2DoubleHeadsModel

from quantgpt.errors import ConfigError, UsageError
from quantgpt.settings import setting, validate
from quantgpt.tasks.errors import DataError
from quantgpt.tasks.personachat import (
    IGNORE_INDEX,
    NUM_CANDIDATES,
    PersonaChatDataset,
    PersonaChatExample,
    add_personachat_special_tokens,
    collate_double_head,
    evaluate_hits_at_1,
    load_parlai_fixture,
    load_personachat,
)
from quantgpt.tokenization import load_gpt2_tokenizer
from quantgpt.training.task import DistillTargets, Task
from quantgpt.validators import integer, number, one_of

DISTILL_CANDIDATES = ("true", "all")
# Split names of ParlAI's regression fixtures (5 examples with the official 20 candidates each).
PARLAI_SPLITS = {"parlai-valid": "valid", "parlai-test": "test"}
PARLAI_FIXTURE = "persona-chat/parlai-fixtures/personachat_self_original_{split}.yml"
MODEL_INPUT_KEYS = ("input_ids", "token_type_ids", "attention_mask", "mc_token_ids")


def _per_candidate(hidden: Tensor, batch_size: int, num_candidates: int) -> Tensor:
    """`(B, N, L, H)` from either `(B * N, L, H)` or `(B, N, L, H)`.

    GPT2DoubleHeadsModel flattens the candidates into the batch inside the transformer, and only
    its final hidden state is reshaped back; this makes every entry of the tuple alike.
    """
    return hidden.reshape(batch_size, num_candidates, *hidden.shape[-2:])


def double_head_distill_targets(outputs: Any, batch: dict[str, Tensor], candidates: str = "true") -> DistillTargets:
    """What a double-head GPT-2 distills on a Persona-Chat batch (module docstring: which sequences).

    outputs: the model's output (`logits` `(B, N, L, V)`, `mc_logits` `(B, N)`, optionally
    `hidden_states`); batch: `collate_double_head`'s tensors. Returns two logit pairs, the LM
    logits with the attention mask of the kept sequences and the multiple-choice logits with no
    mask, and the hidden states, token ids and mask of the kept sequences (`(B, L, ...)` for
    "true", `(B * N, L, ...)` for "all").
    """
    if candidates not in DISTILL_CANDIDATES:
        raise ConfigError(f"candidates={candidates!r}: allowed are {', '.join(DISTILL_CANDIDATES)}")
    batch_size, num_candidates, length = batch["input_ids"].shape
    if candidates == "true":
        rows = torch.arange(batch_size, device=batch["input_ids"].device)
        true = batch["mc_labels"]

        def keep(tensor: Tensor) -> Tensor:
            return tensor[rows, true]

    else:

        def keep(tensor: Tensor) -> Tensor:
            return tensor.reshape(batch_size * num_candidates, *tensor.shape[2:])

    mask = keep(batch["attention_mask"])
    hidden_states = getattr(outputs, "hidden_states", None)
    if hidden_states is not None:
        hidden_states = tuple(keep(_per_candidate(h, batch_size, num_candidates)) for h in hidden_states)
    return DistillTargets(
        logits=[(keep(outputs.logits), mask.bool()), (outputs.mc_logits, None)],
        hidden_states=hidden_states,
        token_ids=keep(batch["input_ids"]),
        token_mask=mask,
    )


def double_head_loss(
    outputs: Any, batch: dict[str, Tensor], lm_coef: float = 1.0, mc_coef: float = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """`(lm_coef * L_lm + mc_coef * L_mc, L_lm, L_mc)` of a double-head GPT-2 on a batch.

    L_lm: mean next-token cross-entropy over the labelled tokens (the true reply and its <eos>;
    the logits at position i predict the label at i + 1, as GPT2DoubleHeadsModel's own loss).
    L_mc: cross-entropy of the multiple-choice logits against the index of the true candidate.
    """
    logits = outputs.logits[..., :-1, :].float()
    labels = batch["labels"][..., 1:]
    lm_loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX)
    mc_loss = F.cross_entropy(outputs.mc_logits.float(), batch["mc_labels"])
    return lm_coef * lm_loss + mc_coef * mc_loss, lm_loss, mc_loss


class MultipleChoiceScorer(nn.Module):
    """A double-head model seen through its multiple-choice head only: `forward` returns `mc_logits`.

    Evaluation needs only the choice, and the LM head's `(B, N, L, V)` logits (20 candidates times
    a 50k vocabulary) would be most of its time and memory. The modules called are the model's own
    (quantized ones included), in the order of GPT2DoubleHeadsModel.forward.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: Tensor, mc_token_ids: Tensor, token_type_ids: Tensor | None = None, attention_mask: Tensor | None = None
    ) -> SimpleNamespace:
        hidden = self.model.transformer(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, use_cache=False
        ).last_hidden_state
        return SimpleNamespace(mc_logits=self.model.multiple_choice_head(hidden, mc_token_ids).squeeze(-1))


@dataclass(frozen=True)
class PersonaChatOptions:
    """Next-utterance prediction (--task personachat).

    train_candidates: candidates per training example (the true reply and the last distractors;
    choice: 2, as transfer-learning-conv-ai); evaluation uses all 20. max_history: utterances kept
    are the last 2 * max_history + 1. max_length: tokens per candidate sequence (paper: 512).
    lm_coef / mc_coef: weights of the two fine-tuning losses. distill_candidates: see the module
    docstring. distractor_seed: seed of the 19 distractors drawn for the local splits.
    """

    max_history: int = setting(2, integer(0), "keep the last 2*N+1 utterances")
    max_length: int = setting(512, integer(8), "tokens per candidate sequence")
    train_candidates: int = setting(
        2, integer(1, NUM_CANDIDATES), "candidates per training example, true one included"
    )
    lm_coef: float = setting(1.0, number(0), "weight of the reply's LM loss")
    mc_coef: float = setting(1.0, number(0), "weight of the multiple-choice loss")
    distill_candidates: str = setting(
        "true", one_of(DISTILL_CANDIDATES), "sequences whose LM logits and hidden states are distilled (true: the true reply's)"
    )
    distractor_seed: int = setting(0, integer(), "seed of the 19 distractors drawn for local splits")

    def __post_init__(self) -> None:
        validate(self)


class PersonaChatTask(Task):
    """Next-utterance prediction on Persona-Chat with a double-head GPT-2 (docs/method.md#tasks-and-training-settings).

    tokenizer: GPT-2's; the Persona-Chat special tokens are added to it. Options: `PersonaChatOptions`
    and `DataOptions` (data_dir: the folder holding `persona-chat/`, e.g. ../shared/data, None reads
    the hub; max_train_examples / max_eval_examples cap the examples, the first ones), by keyword.
    Splits: "train", "valid", "test" (local files carry no candidates: 19 distractors are drawn with
    `distractor_seed`), and "parlai-valid" / "parlai-test" (ParlAI's fixtures, the official 20
    candidates).
    """

    name = "personachat"
    primary_metric = "accuracy"
    greater_is_better = True
    options_class = PersonaChatOptions

    def __init__(self, tokenizer: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(tokenizer, *args, **kwargs)
        if self.data_options.data_files:
            raise UsageError("--task personachat reads Persona-Chat (--data-dir or the hub), not --train-file/--eval-file/--test-file")
        add_personachat_special_tokens(tokenizer)
        self._examples: dict[str, list[PersonaChatExample]] = {}

    # --- model
    def model_class(self) -> Any:
        return GPT2DoubleHeadsModel

    def prepare_model(self, model: nn.Module) -> None:
        """Grow the token embeddings (and the tied LM head) to hold the added special tokens."""
        add_personachat_special_tokens(self.tokenizer, model)

    # --- data
    def examples(self, split: str) -> list[PersonaChatExample]:
        """All examples of `split` (20 candidates each, the true reply last), loaded once."""
        if split not in self._examples:
            if split in PARLAI_SPLITS:
                if self.data_options.data_dir is None:
                    raise DataError(f"split {split!r} is a local ParlAI fixture: pass --data-dir (e.g. ../shared/data)")
                path = Path(self.data_options.data_dir) / PARLAI_FIXTURE.format(split=PARLAI_SPLITS[split])
                self._examples[split] = load_parlai_fixture(path)
            else:
                try:
                    examples = load_personachat(split, self.data_options.data_dir, NUM_CANDIDATES, self.options.distractor_seed)
                except OSError as error:  # the hub out of reach (local files raise DataError instead)
                    raise DataError(
                        f"could not read Persona-Chat {split} from the hub ({str(error).splitlines()[0]}); "
                        "pass --data-dir with local files (e.g. ../shared/data)"
                    ) from None
                self._examples[split] = examples
        return self._examples[split]

    def _dataset(self, split: str, cap: int | None, num_candidates: int | None) -> PersonaChatDataset:
        examples = self.examples(split)
        if cap is not None:
            examples = examples[:cap]
        return PersonaChatDataset(examples, self.tokenizer, self.options.max_history, self.options.max_length, num_candidates)

    def train_dataset(self) -> PersonaChatDataset:
        return self._dataset(self.data_options.train_split, self.data_options.max_train_examples, self.options.train_candidates)

    def eval_dataset(self, split: str) -> PersonaChatDataset:
        return self._dataset(split, self.data_options.max_eval_examples, None)

    def collate(self, examples: list[Any]) -> dict[str, Tensor]:
        return collate_double_head(examples, pad_token_id=self.tokenizer.pad_token_id)

    def model_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {key: batch[key] for key in MODEL_INPUT_KEYS}

    # --- losses
    def task_loss(self, outputs: Any, batch: dict[str, Any]) -> Tensor:
        """lm_coef * (reply next-token NLL) + mc_coef * (cross-entropy of the choice)."""
        return double_head_loss(outputs, batch, self.options.lm_coef, self.options.mc_coef)[0]

    def distill_targets(self, outputs: Any, batch: dict[str, Any]) -> DistillTargets:
        return double_head_distill_targets(outputs, batch, self.options.distill_candidates)

    # --- metric
    def evaluate(self, model: nn.Module, split: str, accelerator: Any) -> dict[str, float]:
        """Hits@1 on `split`: the percentage of examples whose highest multiple-choice logit is the
        true reply, among all of the split's candidates (20).

        Each process scores the examples `rank, rank + N, ...` and the counts are added up, so the
        result is the same on every process and equals a one-process evaluation.
        """

        def score(loader: DataLoader, show: bool) -> tuple[float, float]:
            result = evaluate_hits_at_1(MultipleChoiceScorer(model), loader, device=accelerator.device, progress=show)
            return result["accuracy"] * result["examples"], float(result["examples"])

        totals = self.sharded_sums(split, accelerator, score)
        if totals[1] == 0:
            raise DataError(f"split {split!r} holds no example to score")
        return {"accuracy": float(100.0 * totals[0] / totals[1]), "examples": int(totals[1])}

    # --- tokenizer (settings, record and flags: PersonaChatOptions and DataOptions, through Task)
    @classmethod
    def load_tokenizer(cls, name_or_path: str) -> Any:
        """GPT-2's tokenizer with the Persona-Chat special tokens (a saved run's already has them)."""
        tokenizer = load_gpt2_tokenizer(name_or_path)
        add_personachat_special_tokens(tokenizer)
        return tokenizer
