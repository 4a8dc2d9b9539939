"""Real tokenizers in the GGUF file: llama.cpp must split text exactly as the model was trained to.

For llama.cpp's own vocabulary files (gpt-2, llama-bpe, qwen2: `models/ggml-vocab-*.gguf` in the
llama.cpp that llama-cpp-python builds) and SmolLM2's: the Transformers tokenizer is built from
the file, a tiny model of that vocabulary is quantized and exported with it (the pre-tokenizer
named as llama.cpp's converter names it, by the hash of its probe text's ids), and llama.cpp,
loading the export, must give the expected ids: the vocabulary files' `.out` ids for every `.inp`
text, and for SmolLM2 (which has no such files) Transformers' own ids on WikiText-2 test and on
digit-heavy text.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from llama_cpp_checks import llama_cpp_module, llama_cpp_source, read_pre_tokenizer_table, vocab_tests
from tiny_models import tiny_config
from tokenizers import Tokenizer
from transformers import AutoTokenizer, GPT2LMHeadModel, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2ForCausalLM

from quantgpt import QuantConfig, quantize_model
from quantgpt.export.gguf_writer import PRE_TOKENIZER_TABLE, export_gguf, pre_tokenizer_name
from quantgpt.tasks.language_modeling import load_lm_text
from quantgpt.tokenization import load_decoder_tokenizer

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("gguf-tokenizers")]

# vocabulary file -> (the pre-tokenizer llama.cpp's converter names, the model family it was made for)
VOCABULARIES = {"gpt-2": ("gpt-2", "gpt2"), "llama-bpe": ("llama-bpe", "llama"), "qwen2": ("qwen2", "qwen2")}
MODEL_CLASSES = {"gpt2": GPT2LMHeadModel, "llama": LlamaForCausalLM, "qwen2": Qwen2ForCausalLM}
DIGITS = "In 1987, 3,141,592 people paid $12.50 each; 2024-06-30 at 23:59:59, 0.000123 and 1e-9 (x 100000000)."


def gguf_tokenizer(path: Path):
    """The Transformers tokenizer of a GGUF file, made the published one where Transformers' GGUF
    conversion drops part of it: Llama-3's tokenizer.json has `ignore_merges` (a whole word in the
    vocabulary is one token) and adds <|begin_of_text|>; converted from the GGUF it has neither, so
    it splits "Cửa Việt" differently and the converter's probe hash names it "smaug-bpe"."""
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    if path.name == "ggml-vocab-llama-bpe.gguf":
        backend = json.loads(tokenizer.backend_tokenizer.to_str())
        backend["model"]["ignore_merges"] = True
        bos = "<|begin_of_text|>"
        backend["post_processor"] = {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [tokenizer.convert_tokens_to_ids(bos)], "tokens": [bos]}},
        }
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(backend)), bos_token=bos)
    return tokenizer


def tiny_export(tokenizer, vocab_size: int, family: str, path: Path) -> Path:
    """A random tiny model of `family` with this vocabulary, quantized at 8-8-8 and exported."""
    torch.manual_seed(0)
    ids = {"vocab_size": vocab_size, "bos_token_id": 0, "eos_token_id": 0}
    config = (tiny_config("tiny", n_embd=64, n_head=2, n_layer=1, **ids) if family == "gpt2"
              else tiny_config(f"tiny-{family}", hidden_size=64, intermediate_size=128, num_hidden_layers=1, **ids))
    model = quantize_model(MODEL_CLASSES[family](config).eval(), QuantConfig("quantgpt", "8-8-8"))
    return export_gguf(model, path, tokenizer=tokenizer).path


def test_the_pre_tokenizer_table_is_llama_cpp_s_converter_s():
    committed = json.loads(PRE_TOKENIZER_TABLE.read_text(encoding="utf-8"))
    current = read_pre_tokenizer_table(llama_cpp_source() / "conversion" / "base.py")
    assert committed["probe_text"] == current["probe_text"]
    assert committed["by_hash"] == current["by_hash"]
    names = {entry["pre"] for entry in committed["by_hash"].values()}
    assert {"gpt-2", "llama-bpe", "qwen2", "smollm"} <= names and committed["sentencepiece_pre"] == "default"


@pytest.mark.parametrize("name", VOCABULARIES)
def test_llama_cpp_tokenizes_our_export_of_its_vocabulary_to_its_expected_ids(tmp_path, name):
    llama_cpp = llama_cpp_module()
    vocab_file = llama_cpp_source() / "models" / f"ggml-vocab-{name}.gguf"
    pre, family = VOCABULARIES[name]
    tokenizer = gguf_tokenizer(vocab_file)
    assert pre_tokenizer_name(tokenizer) == pre
    reference = llama_cpp.Llama(model_path=str(vocab_file), vocab_only=True, verbose=False)
    exported = tiny_export(tokenizer, max(reference.n_vocab(), len(tokenizer)), family, tmp_path / "tiny.gguf")
    ours = llama_cpp.Llama(model_path=str(exported), vocab_only=True, verbose=False)
    cases = vocab_tests(vocab_file)
    assert len(cases) > 40
    for text, expected in cases:
        assert ours.tokenize(text.encode("utf-8"), add_bos=False, special=False) == expected, repr(text)


def test_llama_cpp_tokenizes_our_export_of_smollm2_s_tokenizer_as_transformers_does(tmp_path, shared_data, smollm2_dir):
    """The tokenizer quantgpt makes of SmolLM2's GGUF file (`--teacher smollm2-135m`), saved without
    the file's own metadata, so that the export names its pre-tokenizer by the probe hash."""
    llama_cpp = llama_cpp_module()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(smollm2_dir / name, tmp_path / name)
    tokenizer = load_decoder_tokenizer(tmp_path)
    assert pre_tokenizer_name(tokenizer) == "smollm"
    exported = tiny_export(tokenizer, len(tokenizer), "llama", tmp_path / "tiny.gguf")
    ours = llama_cpp.Llama(model_path=str(exported), vocab_only=True, verbose=False)
    test_text = "".join(line + "\n" for line in load_lm_text("wikitext-2", "test", shared_data))
    for text in [test_text, DIGITS, DIGITS.replace(" ", ""), "4 ½ months, ¾ of 2⁵ and Ⅻ"]:
        expected = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ours.tokenize(text.encode("utf-8"), add_bos=False, special=False) == expected, repr(text[:80])
