"""The GGUF export writes our codes and fp16 scales exactly, under llama.cpp's names and metadata.

Every tensor is read back with gguf.GGUFReader and dequantized with gguf.quants.dequantize (the
reference layouts of llama.cpp's Python package), then compared with codes x fp16 scales of the
quantized model: zero difference. A tiny GPT-2 of width 256 (TQ blocks are 256 wide).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from export_helpers import quantized, tiny_bart
from quantgpt.errors import OutputPathError, UsageError
from quantgpt.export.exporter import packed_entries
from quantgpt.export.packed_format import PackedTensor
from quantgpt.testbed.tokenizer import train_bpe_tokenizer
from quantgpt.tasks.language_modeling import load_lm_text

gguf = pytest.importorskip("gguf")
from quantgpt.export.gguf_writer import encode_blocks, export_gguf  # noqa: E402

GGUF_NAMES = {"transformer.wte.weight": "token_embd.weight", "transformer.wpe.weight": "position_embd.weight"}


@pytest.fixture(scope="module")
def tokenizer(shared_data):
    """A byte-level BPE like the testbed's, small so that the vocabulary costs nothing."""
    return train_bpe_tokenizer(load_lm_text("wikitext-2", "valid", shared_data)[:400], vocab_size=512)


def gpt2(tokenizer, width: int = 256, bits: str = "2-2-8", method: str = "quantgpt", tie: bool = True):
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=width, n_head=4, n_positions=64, vocab_size=len(tokenizer),
                        bos_token_id=0, eos_token_id=0, tie_word_embeddings=tie)
    return quantized(GPT2LMHeadModel(config).eval(), method=method, bits=bits)


def expected_tensors(model, position_bits):
    """GGUF name -> what the file must dequantize to: codes x fp16 scales, F32 vectors, F16 positions."""
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPT2, model.config.n_layer)
    expected = {}
    entries, _, _ = packed_entries(model, position_bits, dense_dtype=torch.float32)
    for entry in entries:
        name = names.get_name(entry.name, try_suffixes=(".weight", ".bias"))
        if isinstance(entry, PackedTensor):
            scale = entry.scale.half().float()
            scale = scale.reshape(-1, 1) if scale.ndim else scale
            expected[name] = (entry.codes().float() * scale).numpy()
        elif entry.tensor.ndim == 1:
            expected[name] = entry.tensor.float().numpy()
        else:
            expected[name] = entry.tensor.half().float().numpy()
    return expected


def read_back(path):
    reader = gguf.GGUFReader(path)
    tensors = {t.name: (t.tensor_type.name, gguf.quants.dequantize(t.data, t.tensor_type)) for t in reader.tensors}
    fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    return tensors, fields


@pytest.mark.parametrize(
    ("bits", "ternary_type", "position_bits", "weight_type", "position_type"),
    [
        ("2-2-8", "tq2_0", None, "TQ2_0", "F16"),
        ("2-2-8", "tq1_0", 8, "TQ1_0", "Q8_0"),
        ("4-4-8", "tq2_0", None, "Q4_0", "F16"),
        ("8-8-8", "tq2_0", 8, "Q8_0", "Q8_0"),
    ],
)
def test_every_tensor_dequantizes_to_codes_times_fp16_scales(
    tmp_path, tokenizer, bits, ternary_type, position_bits, weight_type, position_type
):
    model = gpt2(tokenizer, bits=bits)
    result = export_gguf(model, tmp_path / "m.gguf", tokenizer=tokenizer, ternary_type=ternary_type,
                         position_bits=position_bits)
    tensors, fields = read_back(result.path)
    expected = expected_tensors(model, position_bits)

    assert set(tensors) == set(expected)
    assert "output.weight" not in tensors  # the tied head: llama.cpp reuses token_embd
    for name, want in expected.items():
        got = tensors[name][1]
        assert got.shape == want.shape, name
        assert np.array_equal(got, want), f"{name}: max |difference| {np.abs(got - want).max()}"
    types = {name: kind for name, (kind, _) in tensors.items()}
    assert types["token_embd.weight"] == types["blk.1.ffn_down.weight"] == weight_type
    assert types["position_embd.weight"] == position_type
    assert types["blk.0.attn_norm.weight"] == types["blk.0.attn_qkv.bias"] == "F32"
    assert result.file_bytes == result.path.stat().st_size and result.ratio > 1

    assert fields["general.architecture"] == "gpt2"
    assert fields["general.file_type"] == gguf.LlamaFileType[f"MOSTLY_{weight_type}"]
    assert fields["gpt2.context_length"] == 64 and fields["gpt2.embedding_length"] == 256
    assert fields["gpt2.block_count"] == 2 and fields["gpt2.attention.head_count"] == 4
    assert fields["gpt2.feed_forward_length"] == 1024
    assert json.loads(fields["quantgpt.quantization_config"])["bits"] == bits


def test_an_untied_head_is_written_as_output_weight_with_its_row_scales(tmp_path, tokenizer):
    model = gpt2(tokenizer, bits="4-4-8", tie=False)
    tensors, _ = read_back(export_gguf(model, tmp_path / "m.gguf", tokenizer=tokenizer).path)
    expected = expected_tensors(model, None)
    assert tensors["output.weight"][0] == "Q4_0"
    assert np.array_equal(tensors["output.weight"][1], expected["output.weight"])


def test_tokenizer_is_written_as_llama_cpp_s_converter_writes_it(tmp_path, tokenizer):
    path = export_gguf(gpt2(tokenizer), tmp_path / "m.gguf", tokenizer=tokenizer).path
    _, fields = read_back(path)
    vocab = tokenizer.get_vocab()
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    assert fields["tokenizer.ggml.tokens"] == sorted(vocab, key=vocab.get)
    types = fields["tokenizer.ggml.token_type"]
    assert types[0] == gguf.TokenType.CONTROL and set(types[1:]) == {gguf.TokenType.NORMAL}  # <|endoftext|> is id 0
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    assert fields["tokenizer.ggml.merges"] == [" ".join(pair) for pair in merges]
    assert fields["tokenizer.ggml.bos_token_id"] == fields["tokenizer.ggml.eos_token_id"] == 0
    assert fields["tokenizer.ggml.add_bos_token"] is False


def test_encode_blocks_matches_gguf_layouts_for_extreme_codes():
    codes = np.tile(np.arange(-8, 8, dtype=np.int8), 16).reshape(1, 256)
    scales = np.array([0.125], dtype=np.float16)
    for qtype, clip in ((gguf.GGMLQuantizationType.Q4_0, 8), (gguf.GGMLQuantizationType.Q8_0, 8),
                        (gguf.GGMLQuantizationType.TQ1_0, 1), (gguf.GGMLQuantizationType.TQ2_0, 1)):
        clipped = np.clip(codes, -clip, clip - 1 if clip == 8 else clip)
        blocks = encode_blocks(clipped, scales, qtype)
        assert blocks.shape == (1, 256 // gguf.GGML_QUANT_SIZES[qtype][0] * gguf.GGML_QUANT_SIZES[qtype][1])
        assert np.array_equal(gguf.quants.dequantize(blocks, qtype), clipped.astype(np.float32) * 0.125), qtype.name


def test_a_width_no_block_fits_names_the_tensor_and_the_types_that_fit(tmp_path, tokenizer):
    with pytest.raises(UsageError, match=r"^token_embd\.weight \(transformer\.wte\.weight\): input width 96 is not a "
                       r"multiple of 256, the block of TQ2_0; .* at this width: Q4_0, Q8_0"):
        export_gguf(gpt2(tokenizer, width=96), tmp_path / "m.gguf", tokenizer=tokenizer)
    assert not (tmp_path / "m.gguf").exists()
    with pytest.raises(UsageError, match=r"input width 48 is not a multiple of 32, the block of Q4_0; .*: none"):
        export_gguf(gpt2(tokenizer, width=48, bits="4-4-8"), tmp_path / "m.gguf", tokenizer=tokenizer)


def test_two_scale_codes_are_refused_not_rounded(tmp_path, tokenizer):
    with pytest.raises(UsageError, match="two scales .*PACT"):
        export_gguf(gpt2(tokenizer, method="pact"), tmp_path / "m.gguf", tokenizer=tokenizer)


def test_encoder_decoder_models_are_refused(tmp_path, tokenizer):
    with pytest.raises(UsageError, match="BartForConditionalGeneration .* cannot be written as GGUF"):
        export_gguf(quantized(tiny_bart()), tmp_path / "m.gguf", tokenizer=tokenizer)


def test_only_a_gguf_file_is_replaced_and_only_with_overwrite(tmp_path, tokenizer):
    model = gpt2(tokenizer)
    other = tmp_path / "notes.gguf"
    other.write_text("mine")
    with pytest.raises(OutputPathError, match="not a GGUF file"):
        export_gguf(model, other, tokenizer=tokenizer, overwrite=True)
    assert other.read_text() == "mine"
    path = export_gguf(model, tmp_path / "m.gguf", tokenizer=tokenizer).path
    with pytest.raises(OutputPathError, match="--overwrite"):
        export_gguf(model, path, tokenizer=tokenizer)
    export_gguf(model, path, tokenizer=tokenizer, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf", "notes.gguf"]  # no temporary left
