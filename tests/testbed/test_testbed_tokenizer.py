"""The testbed tokenizer: trained on a slice of real text, it has the requested size and round-trips."""

from __future__ import annotations

import pytest

from quantgpt.tasks import load_lm_text
from quantgpt.testbed.tokenizer import END_OF_TEXT, save_tokenizer, train_bpe_tokenizer
from quantgpt.tokenization import load_gpt2_tokenizer


@pytest.fixture(scope="module")
def wikitext_slice(shared_data) -> list[str]:
    return load_lm_text("wikitext-2", "testbed-train", shared_data)[:400]


def test_vocabulary_has_the_requested_size_and_end_of_text_first(wikitext_slice):
    tokenizer = train_bpe_tokenizer(wikitext_slice, vocab_size=600)
    assert len(tokenizer) == 600
    assert tokenizer.convert_tokens_to_ids(END_OF_TEXT) == 0
    assert tokenizer.eos_token_id == 0


def test_round_trips_training_and_unseen_text(wikitext_slice, shared_data):
    tokenizer = train_bpe_tokenizer(wikitext_slice, vocab_size=600)
    unseen = "".join(line + "\n" for line in load_lm_text("ptb", "test", shared_data)[:20]) + "naïve café — ünïcödé ✓\n"
    for text in ("".join(line + "\n" for line in wikitext_slice[:50]), unseen):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert max(ids) < 600
        assert tokenizer.decode(ids) == text


def test_merges_compress_the_training_text(wikitext_slice):
    """With 600 - 257 merges, frequent words become one token: fewer tokens than bytes by far."""
    tokenizer = train_bpe_tokenizer(wikitext_slice, vocab_size=600)
    text = "".join(line + "\n" for line in wikitext_slice)
    assert len(tokenizer(text)["input_ids"]) < 0.5 * len(text.encode("utf-8"))


def test_saved_tokenizer_loads_as_gpt2_tokenizer(wikitext_slice, tmp_path):
    tokenizer = train_bpe_tokenizer(wikitext_slice, vocab_size=300)
    loaded = load_gpt2_tokenizer(save_tokenizer(tokenizer, tmp_path / "tok"))
    text = " = Valkyria Chronicles III = \n"
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert len(loaded) == 300


def test_too_small_vocabulary_is_refused(wikitext_slice):
    with pytest.raises(ValueError, match="vocab_size=100"):
        train_bpe_tokenizer(wikitext_slice, vocab_size=100)
