import json

import pytest

from quantgpt.tasks import DataError
from quantgpt.tokenization import (
    BART_VOCAB_SIZE,
    GPT2_VOCAB_SIZE,
    build_bart_vocab,
    load_bart_tokenizer,
    load_gpt2_tokenizer,
)

SENTENCE = "The Met Office has issued a yellow weather warning for ice across most of Wales."


@pytest.fixture(scope="module")
def tokenizer_dir(shared_data):
    """The GPT-2 BPE files; missing data fails these tests (conftest), never skips them."""
    return shared_data / "gpt2-tokenizer"


@pytest.fixture(scope="module")
def bart(tokenizer_dir):
    return load_bart_tokenizer(tokenizer_dir)


def test_gpt2_tokenizer_from_local_files(tokenizer_dir):
    tokenizer = load_gpt2_tokenizer(tokenizer_dir)
    assert len(tokenizer) == GPT2_VOCAB_SIZE
    assert tokenizer("Hello world")["input_ids"] == [15496, 995]  # GPT-2's well-known ids
    assert tokenizer.eos_token_id == 50256
    assert tokenizer.model_max_length == 1024


def test_bart_vocab_follows_the_fairseq_dictionary(tokenizer_dir):
    gpt2_vocab = json.loads((tokenizer_dir / "vocab.json").read_text())
    vocab = build_bart_vocab(gpt2_vocab, tokenizer_dir / "fairseq-gpt2-dict.txt")
    assert len(vocab) == len(set(vocab.values())) == BART_VOCAB_SIZE
    assert sorted(vocab.values()) == list(range(BART_VOCAB_SIZE))
    # The dictionary's first lines are GPT-2 ids 13 ("."), 262 ("Ġthe"), 11 (",").
    assert (vocab["."], vocab["Ġthe"], vocab[","]) == (4, 5, 6)
    assert vocab["<|endoftext|>"] == 50260  # GPT-2 id 50256 is the dictionary's line 50256
    lines = (tokenizer_dir / "fairseq-gpt2-dict.txt").read_text().splitlines()
    assert all(int(lines[vocab[token] - 4].split()[0]) == gpt2_id for token, gpt2_id in gpt2_vocab.items())


def test_bart_tokenizer_ids_and_round_trip(bart):
    assert len(bart) == BART_VOCAB_SIZE
    assert (bart.bos_token_id, bart.pad_token_id, bart.eos_token_id, bart.unk_token_id, bart.mask_token_id) == (
        0,
        1,
        2,
        3,
        50264,
    )
    assert bart.convert_tokens_to_ids(["madeupword0000", "madeupword0002"]) == [50261, 50263]
    assert bart("Hello world")["input_ids"] == [0, 31414, 232, 2]  # facebook/bart-base's ids
    assert bart("The fox <mask> over")["input_ids"] == [0, 133, 23602, 50264, 81, 2]  # <mask> takes the space before it
    ids = bart(SENTENCE)["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2
    assert bart.decode(ids, skip_special_tokens=True) == SENTENCE


def test_bart_tokenizer_cache_dir_round_trip(tmp_path, bart, tokenizer_dir):
    cached = load_bart_tokenizer(tokenizer_dir, cache_dir=tmp_path / "bart")
    assert (tmp_path / "bart/vocab.json").is_file() and (tmp_path / "bart/merges.txt").is_file()
    assert cached(SENTENCE)["input_ids"] == bart(SENTENCE)["input_ids"]
    cached.save_pretrained(tmp_path / "saved")
    assert load_bart_tokenizer(tmp_path / "saved")(SENTENCE)["input_ids"] == bart(SENTENCE)["input_ids"]


def test_tokenizer_directory_errors(tmp_path):
    with pytest.raises(DataError, match="expected fairseq-gpt2-dict.txt"):
        load_bart_tokenizer(tmp_path)
    with pytest.raises(DataError, match="expected tokenizer files vocab.json, merges.txt"):
        load_gpt2_tokenizer(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_gpt2_tokenizer(str(tmp_path / "missing"))
