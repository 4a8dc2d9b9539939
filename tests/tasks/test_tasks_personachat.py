import random
from types import SimpleNamespace

import pytest
import torch
import yaml
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2DoubleHeadsModel, PreTrainedTokenizerFast

from quantgpt.tasks import (
    DataError,
    PersonaChatExample,
    add_personachat_special_tokens,
    build_double_head_inputs,
    collate_double_head,
    evaluate_hits_at_1,
    load_parlai_fixture,
    load_personachat,
    load_personachat_jsonl,
    make_personachat_dataloader,
    sample_distractors,
)
from quantgpt.tokenization import load_gpt2_tokenizer

from tiny_models import tiny_model

FIXTURES = "persona-chat/parlai-fixtures/personachat_self_original_{split}.yml"
WORDS = "<unk> i like cats hello hi do you dogs no yes".split()


@pytest.fixture()
def word_tokenizer():
    """A whitespace word-level tokenizer whose ids are the positions in WORDS, plus the special tokens."""
    backend = Tokenizer(models.WordLevel({word: index for index, word in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    assert add_personachat_special_tokens(tokenizer) == 5
    return tokenizer


TINY_EXAMPLE = PersonaChatExample(
    persona=("i like cats",), history=("hello", "hi", "do you like dogs"), candidates=("no", "yes i do")
)


@pytest.mark.parametrize("split", ["valid", "test"])
def test_fixture_has_five_examples_with_official_candidates(shared_data, split):
    path = shared_data / FIXTURES.format(split=split)
    acts = [group[0] for group in yaml.safe_load(path.read_text())["acts"]]
    examples = load_parlai_fixture(path)
    assert len(examples) == 5
    for example, act in zip(examples, acts, strict=True):
        assert len(example.candidates) == 20
        assert example.reply == act["eval_labels"][0] == act["label_candidates"][-1]
        assert example.candidates == tuple(act["label_candidates"])
    assert [len(example.history) for example in examples] == [1, 3, 5, 7, 9]
    assert examples[1].history == (acts[0]["text"].split("\n")[-1], acts[0]["eval_labels"][0], acts[1]["text"])


@pytest.mark.parametrize(("split", "replies"), [("valid", 7801), ("test", 7512)])
def test_jsonl_examples_match_the_fixture(shared_data, split, replies):
    examples = load_personachat(split, shared_data)
    assert len(examples) == replies  # ParlAI's num_examples
    fixture = load_parlai_fixture(shared_data / FIXTURES.format(split=split))
    for ours, official in zip(examples[:5], fixture, strict=True):
        assert (ours.persona, ours.history, ours.reply) == (official.persona, official.history, official.reply)


def test_distractors_are_deterministic_distinct_and_never_the_reply(shared_data):
    path = shared_data / "persona-chat/valid.jsonl"
    first = load_personachat_jsonl(path, seed=0)
    again = load_personachat_jsonl(path, seed=0)
    other_seed = load_personachat_jsonl(path, seed=1)
    assert first == again
    assert first[0].candidates != other_seed[0].candidates
    replies = {example.reply for example in first}
    for example in first:
        distractors = example.candidates[:-1]
        assert len(example.candidates) == 20
        assert example.reply not in distractors
        assert len(set(distractors)) == 19
        assert set(distractors) <= replies  # drawn from the split's replies


def test_sample_distractors_from_a_small_pool():
    assert sorted(sample_distractors("b", ["a", "b", "c", "d"], 3, random.Random(0))) == ["a", "c", "d"]
    with pytest.raises(ValueError, match="3 replies other than the true one; 4"):
        sample_distractors("b", ["a", "b", "c", "d"], 4, random.Random(0))


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(DataError, match=r"persona-chat/train\.jsonl: file not found"):
        load_personachat("train", tmp_path)
    (tmp_path / "d.jsonl").write_text('["x", {"content": []}]\n')
    (tmp_path / "d.metadata.jsonl").write_text('{"conversation_id": "x"}\n')
    with pytest.raises(
        DataError, match=r"d\.metadata\.jsonl:1: expected an object with 'conversation_id' and 'personas'"
    ):
        load_personachat_jsonl(tmp_path / "d.jsonl")


def test_double_head_inputs_of_a_tiny_example(word_tokenizer):
    ids = {word: index for index, word in enumerate(WORDS)}
    bos, eos, s1, s2 = word_tokenizer.convert_tokens_to_ids(["<bos>", "<eos>", "<speaker1>", "<speaker2>"])
    inputs = build_double_head_inputs(TINY_EXAMPLE, word_tokenizer, max_history=1)

    context = [bos, ids["i"], ids["like"], ids["cats"], s2, ids["hello"], s1, ids["hi"],
               s2, ids["do"], ids["you"], ids["like"], ids["dogs"]]  # fmt: skip
    context_types = [s1] * 4 + [s2] * 2 + [s1] * 2 + [s2] * 5
    assert inputs["input_ids"] == [context + [s1, ids["no"], eos], context + [s1, ids["yes"], ids["i"], ids["do"], eos]]
    assert inputs["token_type_ids"] == [context_types + [s1] * 3, context_types + [s1] * 5]
    assert inputs["mc_token_ids"] == [15, 17]
    assert inputs["lm_labels"] == [[-100] * 16, [-100] * 14 + [ids["yes"], ids["i"], ids["do"], eos]]
    assert inputs["mc_labels"] == 1


def test_history_window_and_length_limit(word_tokenizer):
    s1, s2 = word_tokenizer.convert_tokens_to_ids(["<speaker1>", "<speaker2>"])
    only_last = build_double_head_inputs(TINY_EXAMPLE, word_tokenizer, max_history=0)
    assert only_last["input_ids"][1][4] == s2 and only_last["input_ids"][1][9] == s1
    assert len(only_last["input_ids"][1]) == 4 + 5 + 5
    # 18 tokens with all three utterances: at most 14 drops "hello" and "hi" (two tokens each).
    limited = build_double_head_inputs(TINY_EXAMPLE, word_tokenizer, max_history=1, max_length=14)
    assert limited["input_ids"] == only_last["input_ids"]
    # At 11 even one utterance is too long with the persona: its 3 tokens go, the reply stays whole.
    bos, eos = word_tokenizer.convert_tokens_to_ids(["<bos>", "<eos>"])
    no_persona = build_double_head_inputs(TINY_EXAMPLE, word_tokenizer, max_history=0, max_length=11)
    assert no_persona["input_ids"][1] == [bos, s2, 6, 7, 2, 8, s1, 10, 1, 6, eos]
    with pytest.raises(ValueError, match="max_length=5 cannot hold"):
        build_double_head_inputs(TINY_EXAMPLE, word_tokenizer, max_length=5)


def test_inputs_need_the_special_tokens():
    plain = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")), unk_token="<unk>"
    )
    with pytest.raises(
        ValueError, match="lacks <bos>, <eos>, <speaker1>, <speaker2>, <pad>; call add_personachat_special_tokens"
    ):
        build_double_head_inputs(TINY_EXAMPLE, plain)


def test_collate_pads_to_batch_candidates_length(word_tokenizer):
    pad = word_tokenizer.pad_token_id
    first = build_double_head_inputs(TINY_EXAMPLE, word_tokenizer, max_history=1)
    second = build_double_head_inputs(TINY_EXAMPLE, word_tokenizer, max_history=0)
    batch = collate_double_head([first, second], pad_token_id=pad)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (2, 2, 18)
    assert batch["input_ids"][1, 0, 12:].tolist() == [pad] * 6
    assert batch["token_type_ids"][1, 0, 12:].tolist() == [pad] * 6
    assert batch["attention_mask"][1].sum(dim=-1).tolist() == [12, 14]
    assert batch["labels"][1, 1].tolist() == second["lm_labels"][1] + [-100] * 4
    assert batch["mc_token_ids"].tolist() == [[15, 17], [11, 13]]
    assert batch["mc_labels"].tolist() == [1, 1]


class FirstTokenChooser(torch.nn.Module):
    """Mocked double-head model: the choice logit of a candidate is its first token id."""

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, mc_token_ids=None):
        return SimpleNamespace(mc_logits=input_ids[:, :, 0].float())


def test_hits_at_1_with_known_choice_logits():
    def batch(first_tokens, labels):
        input_ids = torch.tensor(first_tokens)[:, :, None].repeat(1, 1, 3)
        size = input_ids.shape[:2]
        return {
            "input_ids": input_ids,
            "token_type_ids": torch.zeros_like(input_ids),
            "attention_mask": torch.ones_like(input_ids),
            "mc_token_ids": torch.full(size, 2),
            "mc_labels": torch.tensor(labels),
        }

    # Argmaxes 2, 0 | 1, 2, 2 against labels 2, 2 | 1, 2, 0: three hits of five.
    batches = [batch([[1, 2, 9], [9, 3, 4]], [2, 2]), batch([[0, 5, 1], [1, 2, 3], [4, 5, 6]], [1, 2, 0])]
    assert evaluate_hits_at_1(FirstTokenChooser(), batches, progress=False) == {"accuracy": 0.6, "examples": 5}


def test_hits_at_1_of_a_tiny_double_head_model_on_the_fixture(shared_data):
    tokenizer = load_gpt2_tokenizer(shared_data / "gpt2-tokenizer")  # a fresh one: special tokens get added
    model = tiny_model("tiny", seed=0, model_class=GPT2DoubleHeadsModel, n_positions=512)
    add_personachat_special_tokens(tokenizer, model)
    assert model.get_input_embeddings().num_embeddings == len(tokenizer) == 50262
    examples = load_parlai_fixture(shared_data / FIXTURES.format(split="valid"))
    candidates = 4  # the last four of the official 20: the LM head's logits over 50k tokens dominate the time

    model.eval()
    expected_hits = 0
    with torch.no_grad():
        for example in examples:
            single = collate_double_head(
                [build_double_head_inputs(example, tokenizer, num_candidates=candidates)], tokenizer.pad_token_id
            )
            mc_logits = model(**{k: single[k] for k in ("input_ids", "token_type_ids", "mc_token_ids")}).mc_logits
            expected_hits += int(mc_logits.argmax(-1).item() == candidates - 1)

    loader = make_personachat_dataloader(examples, tokenizer, batch_size=2, num_candidates=candidates)
    result = evaluate_hits_at_1(model, loader, progress=False)
    assert result == {"accuracy": pytest.approx(expected_hits / 5), "examples": 5}
