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


def _non_gpt2_tokenizer(pre_tokenizer):
    """A small BPE with a pre-tokenizer that is not GPT-2's, as a Llama or Qwen2 tokenizer has."""
    from tokenizers import Tokenizer, decoders, models, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizer
    backend.decoder = decoders.Metaspace() if type(pre_tokenizer).__name__ == "Metaspace" else decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"])
    backend.train_from_iterator([SENTENCE, "The tower is 324 metres tall, as tall as an 81-storey building."] * 20, trainer)
    return backend, PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


@pytest.mark.parametrize("family", ["metaspace", "qwen2_regex"])
def test_decoder_tokenizer_loads_the_saved_pre_tokenizer(tmp_path, family):
    from decoder_models import tiny_llama
    from tokenizers import Regex, pre_tokenizers

    from quantgpt.export.generation import load_packed_tokenizer
    from quantgpt.export.gguf_writer import _load_tokenizer
    from quantgpt.tasks.lm_task import LanguageModelingTask
    from quantgpt.tokenization import load_decoder_tokenizer

    pre = (
        pre_tokenizers.Metaspace()
        if family == "metaspace"
        else pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+| ?\p{L}+"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    )
    backend, tokenizer = _non_gpt2_tokenizer(pre)
    tiny_llama(vocab=300).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    text = "The tower is 3240 metres tall,  about as tall as Wales."
    expected = backend.encode(text).ids
    assert load_gpt2_tokenizer(tmp_path)(text)["input_ids"] != expected  # what the GPT-2 class makes of it
    for loaded in (
        load_decoder_tokenizer(tmp_path),
        LanguageModelingTask.load_tokenizer(str(tmp_path)),
        load_packed_tokenizer(tmp_path, "llama"),
        _load_tokenizer(tmp_path),
    ):
        assert loaded(text)["input_ids"] == expected
        assert (loaded.bos_token, loaded.eos_token, loaded.unk_token) == ("<s>", "</s>", "<unk>")
        assert loaded.decode(expected) == tokenizer.decode(expected)


def test_decoder_tokenizer_keeps_gpt2_ids(tmp_path, tokenizer_dir):
    from quantgpt.tokenization import load_decoder_tokenizer

    gpt2 = load_gpt2_tokenizer(tokenizer_dir)
    assert load_decoder_tokenizer(tokenizer_dir)(SENTENCE)["input_ids"] == gpt2(SENTENCE)["input_ids"]
    gpt2.save_pretrained(tmp_path / "saved")
    saved = load_decoder_tokenizer(tmp_path / "saved")
    assert saved(SENTENCE)["input_ids"] == gpt2(SENTENCE)["input_ids"]
    assert (saved.eos_token_id, saved.model_max_length) == (50256, 1024)
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare/tokenizer.json").write_text((tmp_path / "saved/tokenizer.json").read_text())
    assert load_decoder_tokenizer(tmp_path / "bare").eos_token_id == 50256  # GPT-2's default with no config
