"""Next-utterance prediction on Persona-Chat: examples, double-head GPT-2 inputs, hits@1.

An example is what the persona speaker sees before one of its replies: its persona sentences,
the dialogue so far, and candidate replies with the true one last (the ConvAI2 convention).
Inputs are built as Hugging Face's transfer-learning-conv-ai builds them for
`GPT2DoubleHeadsModel`; the metric is the accuracy of picking the true reply among the
candidates (20 of them: docs/method.md#tasks-and-training-settings).

Sources:
  * ConvAI2 JSON lines (`<split>.jsonl` + `<split>.metadata.jsonl`, ../shared/data/persona-chat);
    they carry no candidates, so 19 distractors are drawn with a fixed seed from the other
    replies of the same split, as the official candidates were made.
  * ParlAI's regression fixtures (`parlai-fixtures/*.yml`) with the official 20 candidates.
  * transfer-learning-conv-ai's JSON (`personachat_self_original.json`) or its hub copy.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from quantgpt.tasks.errors import DataError
from quantgpt.tasks.jsonl import read_json_lines
from quantgpt.tasks.language_modeling import TESTBED_SPLITS, TESTBED_TRAIN_FRACTION
from quantgpt.config import ConfigError

IGNORE_INDEX = -100
NUM_CANDIDATES = 20
PERSONA_AGENT = "agent_2"
PARLAI_PERSONA_PREFIX = "your persona: "
CONVAI_JSON_NAME = "personachat_self_original.json"
HUB_DATASET = "AlekseyKorshuk/persona-chat"  # transfer-learning-conv-ai's JSON, splits train/validation
PERSONACHAT_SPECIAL_TOKENS = ("<bos>", "<eos>", "<speaker1>", "<speaker2>", "<pad>")
SPECIAL_TOKENS_MAP = {
    "bos_token": "<bos>",
    "eos_token": "<eos>",
    "pad_token": "<pad>",
    "additional_special_tokens": ["<speaker1>", "<speaker2>"],
}


@dataclass(frozen=True)
class PersonaChatExample:
    """One reply of the persona speaker: persona sentences, dialogue history, candidates (true last)."""

    persona: tuple[str, ...]
    history: tuple[str, ...]
    candidates: tuple[str, ...]
    dialogue_id: str = ""

    @property
    def reply(self) -> str:
        return self.candidates[-1]


# ---------------------------------------------------------------------------------------------
# Loading


def sample_distractors(true_reply: str, pool: Sequence[str], num_distractors: int, rng: random.Random) -> list[str]:
    """`num_distractors` replies drawn by `rng` without replacement from `pool` (distinct replies),
    never the true reply."""
    draws = rng.sample(range(len(pool)), min(len(pool), num_distractors + 1))
    chosen = [pool[index] for index in draws if pool[index] != true_reply][:num_distractors]
    if len(chosen) < num_distractors:
        raise DataError(
            f"the pool has {len(chosen)} replies other than the true one; {num_distractors} distractors needed"
        )
    return chosen


def _with_distractors(
    examples: list[tuple[str, tuple[str, ...], tuple[str, ...], str]], num_candidates: int, seed: int
) -> list[PersonaChatExample]:
    """Examples whose candidates are distractors from the split's other replies, then the true reply.

    Each example draws from its own generator, seeded by (seed, example index), so its candidates
    do not depend on which other examples a caller keeps.
    """
    pool = list(dict.fromkeys(reply for _, _, _, reply in examples))  # distinct, in order of appearance
    result = []
    for index, (dialogue_id, persona, history, reply) in enumerate(examples):
        rng = random.Random(seed * 1_000_003 + index)
        distractors = sample_distractors(reply, pool, num_candidates - 1, rng)
        result.append(PersonaChatExample(persona, history, (*distractors, reply), dialogue_id))
    return result


def load_personachat_jsonl(
    dialogues_path: str | Path,
    metadata_path: str | Path | None = None,
    num_candidates: int = NUM_CANDIDATES,
    seed: int = 0,
) -> list[PersonaChatExample]:
    """Examples from ConvAI2 JSON lines: one per reply of the persona speaker (agent_2).

    dialogues_path: lines `[id, {"content": [{"agent", "message"}, ...]}]`.
    metadata_path: lines `{"conversation_id", "personas"}`; default `<stem>.metadata.jsonl` beside it.
    The history is every message before the reply; the candidates are `num_candidates - 1`
    distractors drawn (seeded) from the split's other replies, then the true reply.
    """
    if num_candidates < 1:
        raise ConfigError(f"num_candidates={num_candidates} is invalid; allowed: an integer >= 1 (the true reply)")
    dialogues_path = Path(dialogues_path)
    if metadata_path is None:
        metadata_path = dialogues_path.with_name(dialogues_path.stem + ".metadata.jsonl")
    metadata_path = Path(metadata_path)
    personas = {}
    for number, record in read_json_lines(metadata_path):
        if not isinstance(record, dict) or "conversation_id" not in record or "personas" not in record:
            raise DataError(f"{metadata_path}:{number}: expected an object with 'conversation_id' and 'personas'")
        personas[record["conversation_id"]] = tuple(record["personas"])
    raw_examples = []
    for number, record in read_json_lines(dialogues_path):
        try:
            dialogue_id, body = record
            messages = [(message["agent"], message["message"]) for message in body["content"]]
        except (TypeError, ValueError, KeyError):
            raise DataError(
                f'{dialogues_path}:{number}: expected [id, {{"content": [{{"agent", "message"}}, ...]}}]'
            ) from None
        if dialogue_id not in personas:
            raise DataError(f"{metadata_path}: no personas for conversation {dialogue_id!r} of {dialogues_path}")
        for position, (agent, message) in enumerate(messages):
            if agent == PERSONA_AGENT:
                history = tuple(text for _, text in messages[:position])
                raw_examples.append((dialogue_id, personas[dialogue_id], history, message))
    if not raw_examples:
        raise DataError(f"{dialogues_path}: expected replies of {PERSONA_AGENT}, found none")
    return _with_distractors(raw_examples, num_candidates, seed)


def load_parlai_fixture(path: str | Path) -> list[PersonaChatExample]:
    """Examples from a ParlAI regression fixture (`acts:` YAML) with its official candidates.

    Each act's `text` is the partner's message, preceded by "your persona: ..." lines at the
    start of an episode; the history accumulates the texts and true replies of the episode's
    earlier acts and restarts after `episode_done`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        acts = yaml.safe_load(path.read_text(encoding="utf-8"))["acts"]
    except (yaml.YAMLError, TypeError, KeyError):
        raise DataError(f"{path}: expected a ParlAI fixture, a YAML mapping with a list 'acts'") from None
    examples: list[PersonaChatExample] = []
    persona: list[str] = []
    history: list[str] = []
    episode_done = True
    for number, act_group in enumerate(acts, start=1):
        act = act_group[0] if isinstance(act_group, list) else act_group
        try:
            text, candidates = act["text"], list(act["label_candidates"])
            reply = (act.get("eval_labels") or act["labels"])[0]
        except (TypeError, KeyError, IndexError):
            raise DataError(f"{path}: act {number}: expected 'text', 'label_candidates' and 'eval_labels'") from None
        if episode_done:
            persona, history = [], []
        utterance_lines = []
        for line in text.split("\n"):
            if line.startswith(PARLAI_PERSONA_PREFIX):
                persona.append(line[len(PARLAI_PERSONA_PREFIX) :])
            else:
                utterance_lines.append(line)
        history.append("\n".join(utterance_lines))
        if reply not in candidates:
            raise DataError(f"{path}: act {number}: the true reply is not among 'label_candidates'")
        candidates.remove(reply)
        examples.append(PersonaChatExample(tuple(persona), tuple(history), (*candidates, reply), act.get("id", "")))
        history.append(reply)
        episode_done = bool(act.get("episode_done", False))
    return examples


def examples_from_convai_dialogues(
    dialogues: Iterable[Mapping], num_candidates: int | None = None
) -> list[PersonaChatExample]:
    """Examples from transfer-learning-conv-ai's dialogues `{"personality", "utterances": [{"history", "candidates"}]}`.

    Its candidates already end with the true reply; `num_candidates` keeps only the last ones.
    """
    examples = []
    for number, dialogue in enumerate(dialogues):
        persona = tuple(dialogue["personality"])
        for utterance in dialogue["utterances"]:
            candidates = tuple(utterance["candidates"])
            if num_candidates is not None:
                candidates = candidates[-num_candidates:]
            examples.append(PersonaChatExample(persona, tuple(utterance["history"]), candidates, str(number)))
    return examples


def load_personachat(
    split: str = "valid",
    data_dir: str | Path | None = None,
    num_candidates: int = NUM_CANDIDATES,
    seed: int = 0,
) -> list[PersonaChatExample]:
    """Persona-Chat examples of one split ("train", "valid"/"validation", "test", or the CPU
    testbed's "testbed-train" / "testbed-select": the first 90% / last 10% of the validation
    dialogues, whole dialogues on each side, candidates as drawn for the validation split).

    data_dir (e.g. ../shared/data): reads `persona-chat/personachat_self_original.json` when
    present (official candidates), else `persona-chat/<split>.jsonl` + `.metadata.jsonl` (seeded
    distractors). data_dir=None: the hub copy of the conv-ai JSON (train and validation only).
    """
    split = "valid" if split == "validation" else split
    allowed = ("train", "valid", "test", *TESTBED_SPLITS)
    if split not in allowed:
        raise ConfigError(f"split={split!r} is unknown; allowed: {', '.join(allowed)}")
    if split in TESTBED_SPLITS:
        examples = load_personachat("valid", data_dir, num_candidates, seed)
        dialogues = list(dict.fromkeys(example.dialogue_id for example in examples))
        held_out = set(dialogues[int(len(dialogues) * TESTBED_TRAIN_FRACTION):])
        return [example for example in examples if (example.dialogue_id in held_out) == (split == "testbed-select")]
    if data_dir is None:
        from datasets import load_dataset

        hub_split = "validation" if split == "valid" else split
        return examples_from_convai_dialogues(load_dataset(HUB_DATASET, split=hub_split), num_candidates)
    folder = Path(data_dir) / "persona-chat"
    convai_json = folder / CONVAI_JSON_NAME
    if convai_json.is_file():
        try:
            dialogues = json.loads(convai_json.read_text(encoding="utf-8"))[split]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataError(f"{convai_json}: expected a JSON object with a list of dialogues under {split!r}") from None
        return examples_from_convai_dialogues(dialogues, num_candidates)
    jsonl = folder / f"{split}.jsonl"
    if not jsonl.is_file():
        raise DataError(f"{jsonl}: file not found (nor {convai_json}) for Persona-Chat split {split!r}")
    return load_personachat_jsonl(jsonl, num_candidates=num_candidates, seed=seed)


# ---------------------------------------------------------------------------------------------
# Inputs for GPT2DoubleHeadsModel


def add_personachat_special_tokens(tokenizer: PreTrainedTokenizerBase, model: torch.nn.Module | None = None) -> int:
    """Adds <bos>, <eos>, <speaker1>, <speaker2>, <pad> to the tokenizer; returns how many were new.

    With a model, its token embeddings (and tied LM head) grow to the tokenizer's size when they
    are smaller, so the new ids have rows to learn.
    """
    added = tokenizer.add_special_tokens(SPECIAL_TOKENS_MAP)
    if model is not None and model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    return added


def _special_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    ids = tokenizer.convert_tokens_to_ids(list(PERSONACHAT_SPECIAL_TOKENS))
    missing = [
        token
        for token, token_id in zip(PERSONACHAT_SPECIAL_TOKENS, ids, strict=True)
        if token_id is None or token_id == tokenizer.unk_token_id
    ]
    if missing:
        raise ValueError(f"the tokenizer lacks {', '.join(missing)}; call add_personachat_special_tokens first")
    return ids


def _build_sequence(
    persona: list[int], history: list[list[int]], reply: list[int], ids: list[int], is_true_reply: bool
) -> dict[str, list[int] | int]:
    """One candidate's inputs, as transfer-learning-conv-ai's build_input_from_segments.

    Segments: [<bos> persona], then history utterances and the reply, each preceded by a speaker
    token; speakers alternate backwards from the reply, which is <speaker1> when the history has
    an odd length (always, for history windows of 2 * max_history + 1 utterances ending with the
    partner). token_type_ids give each token its segment's speaker (<speaker1> for the persona).
    """
    bos, eos, speaker1, speaker2, _ = ids
    segments = [[bos, *persona], *history, [*reply, eos]]
    segments = [segments[0]] + [
        [speaker2 if (len(segments) - i) % 2 else speaker1, *segment] for i, segment in enumerate(segments[1:])
    ]
    input_ids = list(chain.from_iterable(segments))
    token_type_ids = [speaker2 if i % 2 else speaker1 for i, segment in enumerate(segments) for _ in segment]
    lm_labels = [IGNORE_INDEX] * len(input_ids)
    if is_true_reply:
        # Score the reply's tokens and <eos>, not its speaker token.
        context_length = len(input_ids) - len(segments[-1])
        lm_labels = [IGNORE_INDEX] * (context_length + 1) + segments[-1][1:]
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "mc_token_ids": len(input_ids) - 1,
        "lm_labels": lm_labels,
    }


def build_double_head_inputs(
    example: PersonaChatExample,
    tokenizer: PreTrainedTokenizerBase,
    max_history: int = 2,
    max_length: int = 512,
    num_candidates: int | None = None,
) -> dict[str, list | int]:
    """Inputs of one example for `GPT2DoubleHeadsModel`, one sequence per candidate.

    Keeps the last 2 * max_history + 1 utterances of the history (conv-ai's window) and the last
    `num_candidates` candidates (all when None). Returns
      input_ids, token_type_ids, lm_labels: one list of ints per candidate;
      mc_token_ids: the last position of each candidate (its <eos>, read by the choice head);
      lm_labels: -100 everywhere except the true candidate's reply tokens and <eos>;
      mc_labels: the index of the true candidate (the last).
    When the longest candidate's sequence exceeds max_length, the oldest history utterances are
    dropped (down to one), then the persona is cut from its end, then long candidates are cut;
    all candidates share the same context so the choice compares replies only.
    """
    if max_history < 0:
        raise ConfigError(f"max_history={max_history} is negative; allowed: an integer >= 0")
    special = _special_ids(tokenizer)

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    candidates = example.candidates[-num_candidates:] if num_candidates else example.candidates
    persona = list(chain.from_iterable(encode(sentence) for sentence in example.persona))
    history = [encode(utterance) for utterance in example.history[-(2 * max_history + 1) :]]
    replies = [encode(candidate) for candidate in candidates]

    longest_reply = max(len(reply) for reply in replies) + 2  # speaker token and <eos>

    def context_length() -> int:
        return 1 + len(persona) + sum(len(utterance) + 1 for utterance in history)

    while history[1:] and context_length() + longest_reply > max_length:
        history.pop(0)
    overflow = context_length() + longest_reply - max_length
    if overflow > 0:
        persona = persona[: max(0, len(persona) - overflow)]
    reply_budget = max_length - context_length() - 2
    if reply_budget < 1:
        raise ConfigError(f"max_length={max_length} cannot hold the last history utterance and a reply")
    replies = [reply[:reply_budget] for reply in replies]

    sequences = [
        _build_sequence(persona, history, reply, special, is_true_reply=(index == len(replies) - 1))
        for index, reply in enumerate(replies)
    ]
    return {
        "input_ids": [sequence["input_ids"] for sequence in sequences],
        "token_type_ids": [sequence["token_type_ids"] for sequence in sequences],
        "mc_token_ids": [sequence["mc_token_ids"] for sequence in sequences],
        "lm_labels": [sequence["lm_labels"] for sequence in sequences],
        "mc_labels": len(replies) - 1,
    }


class PersonaChatDataset(Dataset):
    """Examples whose double-head inputs are built on access (tokenizing is cheap next to a forward pass)."""

    def __init__(
        self,
        examples: Sequence[PersonaChatExample],
        tokenizer: PreTrainedTokenizerBase,
        max_history: int = 2,
        max_length: int = 512,
        num_candidates: int | None = None,
    ):
        _special_ids(tokenizer)
        self.examples = examples
        self.tokenizer = tokenizer
        self.max_history = max_history
        self.max_length = max_length
        self.num_candidates = num_candidates

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, list | int]:
        return build_double_head_inputs(
            self.examples[index], self.tokenizer, self.max_history, self.max_length, self.num_candidates
        )


def collate_double_head(batch: Sequence[Mapping[str, list | int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pads built inputs to (batch, num_candidates, seq_len) tensors named as the model's arguments.

    input_ids and token_type_ids are padded with `pad_token_id` (as conv-ai does), labels (the
    lm_labels) with -100; attention_mask marks real tokens; mc_token_ids is (batch,
    num_candidates) and mc_labels (batch,).
    """
    num_candidates = {len(item["input_ids"]) for item in batch}
    if len(num_candidates) != 1:
        raise ValueError(f"examples of one batch need the same number of candidates, found {sorted(num_candidates)}")
    (candidates,) = num_candidates
    length = max(len(sequence) for item in batch for sequence in item["input_ids"])
    shape = (len(batch), candidates, length)
    input_ids = torch.full(shape, pad_token_id, dtype=torch.long)
    token_type_ids = torch.full(shape, pad_token_id, dtype=torch.long)
    labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros(shape, dtype=torch.long)
    for row, item in enumerate(batch):
        for column in range(candidates):
            size = len(item["input_ids"][column])
            input_ids[row, column, :size] = torch.tensor(item["input_ids"][column])
            token_type_ids[row, column, :size] = torch.tensor(item["token_type_ids"][column])
            labels[row, column, :size] = torch.tensor(item["lm_labels"][column])
            attention_mask[row, column, :size] = 1
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
        "mc_token_ids": torch.tensor([item["mc_token_ids"] for item in batch], dtype=torch.long),
        "labels": labels,
        "mc_labels": torch.tensor([item["mc_labels"] for item in batch], dtype=torch.long),
    }


def make_personachat_dataloader(
    examples: Sequence[PersonaChatExample],
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    shuffle: bool = False,
    max_history: int = 2,
    max_length: int = 512,
    num_candidates: int | None = None,
    **dataloader_kwargs,
) -> DataLoader:
    """A DataLoader of `collate_double_head` batches; the tokenizer needs the special tokens added."""
    dataset = PersonaChatDataset(examples, tokenizer, max_history, max_length, num_candidates)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=partial(collate_double_head, pad_token_id=tokenizer.pad_token_id),
        **dataloader_kwargs,
    )


# ---------------------------------------------------------------------------------------------
# Metric


@torch.no_grad()
def evaluate_hits_at_1(
    model: torch.nn.Module,
    dataloader: Iterable[Mapping[str, torch.Tensor]],
    device: torch.device | str | None = None,
    progress: bool = True,
) -> dict[str, float | int]:
    """Accuracy of the multiple-choice head: the fraction of examples whose argmax of `mc_logits`
    is the true candidate (hits@1 of 20 with the official candidates). Returns {"accuracy", "examples"};
    the model's train/eval mode is restored afterwards.
    """
    if device is None:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    correct, total = 0, 0
    try:
        for batch in tqdm(dataloader, desc="hits@1", disable=not progress, leave=False):
            outputs = model(
                input_ids=batch["input_ids"].to(device),
                token_type_ids=batch["token_type_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                mc_token_ids=batch["mc_token_ids"].to(device),
            )
            predictions = outputs.mc_logits.argmax(dim=-1).cpu()
            correct += int((predictions == batch["mc_labels"]).sum().item())
            total += predictions.numel()
    finally:
        model.train(was_training)
    if total == 0:
        raise DataError("the dataloader holds no example")
    return {"accuracy": correct / total, "examples": total}
