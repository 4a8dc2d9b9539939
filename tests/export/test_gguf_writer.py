"""The GGUF export writes our codes and fp16 scales exactly, under llama.cpp's names and metadata.

Every tensor is read back with gguf.GGUFReader and dequantized with gguf.quants.dequantize (the
reference layouts of llama.cpp's Python package; for Q2_0, which it lacks, `reference_q2_0` below,
written from llama.cpp's C definition), then compared with codes x fp16 scales of the quantized
model: zero difference. Tiny GPT-2, Llama and Qwen2 of width 256 (TQ blocks are 256 wide), and a
Llama of width 192 whose ternary matrices go to Q2_0 (blocks of 64); Llama's q/k rows are compared
after llama.cpp's converter's own permutation.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from decoder_models import tiny_opt
from export_helpers import quantized, tiny_bart
from tiny_models import tiny_config
from transformers import GPT2LMHeadModel, LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM

from quantgpt.errors import OutputPathError, UsageError
from quantgpt.export.exporter import packed_entries
from quantgpt.export.packed_format import PackedTensor
from quantgpt.tasks.language_modeling import load_lm_text
from quantgpt.testbed.tokenizer import train_bpe_tokenizer

gguf = pytest.importorskip("gguf")
from quantgpt.export.gguf_writer import (  # noqa: E402
    _llama_rotary_rows,
    _quantized_tensor,
    encode_blocks,
    export_gguf,
)

GGUF_NAMES = {"transformer.wte.weight": "token_embd.weight", "transformer.wpe.weight": "position_embd.weight"}


@pytest.fixture(scope="module")
def tokenizer(shared_data):
    """A byte-level BPE like the testbed's, small so that the vocabulary costs nothing."""
    return train_bpe_tokenizer(load_lm_text("wikitext-2", "valid", shared_data)[:400], vocab_size=512)


def gpt2(tokenizer, width: int = 256, bits: str = "2-2-8", method: str = "quantgpt", tie: bool = True):
    torch.manual_seed(0)
    config = tiny_config("tiny", n_embd=width, n_head=4, n_positions=64, vocab_size=len(tokenizer),
                         bos_token_id=0, eos_token_id=0, tie_word_embeddings=tie)
    return quantized(GPT2LMHeadModel(config).eval(), method=method, bits=bits)


def rope_decoder(model_class, tokenizer, bits: str = "2-2-8", config_name: str | None = None, **options):
    torch.manual_seed(0)
    config = tiny_config(config_name or "tiny-mistral", vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=0,
                         **options)
    return quantized(model_class(config).eval(), bits=bits)


# family -> (model builder, gguf arch, feed-forward width, F32 tensors, untied head)
FAMILIES = {
    "gpt2": (gpt2, gguf.MODEL_ARCH.GPT2, 1024, ("blk.0.attn_norm.weight", "blk.0.attn_qkv.bias"), False),
    "llama": (lambda tok, bits: rope_decoder(LlamaForCausalLM, tok, bits, "tiny-llama"), gguf.MODEL_ARCH.LLAMA, 512,
              ("blk.0.attn_norm.weight", "output_norm.weight"), True),
    "qwen2": (lambda tok, bits: rope_decoder(Qwen2ForCausalLM, tok, bits, "tiny-qwen2"), gguf.MODEL_ARCH.QWEN2, 768,
              ("blk.0.ffn_norm.weight", "blk.0.attn_q.bias", "blk.1.attn_k.bias", "blk.0.attn_v.bias"), False),
}


def llama_cpp_permute(weights: torch.Tensor, n_head: int) -> torch.Tensor:
    """convert_hf_to_gguf.py's LlamaModel.permute (n_head already the key/value count for k_proj)."""
    return weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def expected_tensors(model, position_bits, arch=gguf.MODEL_ARCH.GPT2):
    """GGUF name -> what the file must dequantize to: codes x fp16 scales, F32 vectors, F16 positions,
    Llama's q/k rows (weights and biases) in llama.cpp's rotary order."""
    names = gguf.get_tensor_name_map(arch, model.config.num_hidden_layers)
    expected = {}
    entries, _, _ = packed_entries(model, position_bits, dense_dtype=torch.float32)
    for entry in entries:
        name = names.get_name(entry.name, try_suffixes=(".weight", ".bias"))
        if isinstance(entry, PackedTensor):
            scale = entry.scale.half().float()
            scale = scale.reshape(-1, 1) if scale.ndim else scale
            value = entry.codes().float() * scale
        elif entry.tensor.ndim == 1:
            value = entry.tensor.float()
        else:
            value = entry.tensor.half().float()
        if arch == gguf.MODEL_ARCH.LLAMA and ".self_attn.q_proj." in entry.name:
            value = llama_cpp_permute(value, model.config.num_attention_heads)
        elif arch == gguf.MODEL_ARCH.LLAMA and ".self_attn.k_proj." in entry.name:
            value = llama_cpp_permute(value, model.config.num_key_value_heads)
        expected[name] = value.numpy()
    return expected


def reference_q2_0(blocks: np.ndarray) -> np.ndarray:
    """llama.cpp's dequantize_row_q2_0 (ggml-quants.c), element by element: block = fp16 d, then
    16 bytes; element j is (((qs[j / 4] >> (2 (j % 4))) & 3) - 1) * d."""
    rows = blocks.reshape(blocks.shape[0], -1, 18)
    out = np.empty((rows.shape[0], rows.shape[1] * 64), dtype=np.float32)
    for r, row in enumerate(rows):
        for b, block in enumerate(row):
            d = np.float32(block[:2].view(np.float16)[0])
            for j in range(64):
                out[r, b * 64 + j] = (int((block[2 + j // 4] >> (2 * (j % 4))) & 3) - 1) * d
    return out


def dequantized(tensor) -> np.ndarray:
    if tensor.tensor_type.name == "Q2_0":
        return reference_q2_0(np.asarray(tensor.data))
    return gguf.quants.dequantize(tensor.data, tensor.tensor_type)


def read_back(path):
    reader = gguf.GGUFReader(path)
    tensors = {t.name: (t.tensor_type.name, dequantized(t)) for t in reader.tensors}
    fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    return tensors, fields


@pytest.mark.parametrize("family", FAMILIES)
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
    tmp_path, tokenizer, family, bits, ternary_type, position_bits, weight_type, position_type
):
    build, arch, feed_forward, f32_tensors, untied = FAMILIES[family]
    model = build(tokenizer, bits=bits)
    if family != "gpt2":  # rotary positions: no table, and --position-bits is refused (below)
        position_bits = None
    result = export_gguf(model, tmp_path / "m.gguf", tokenizer=tokenizer, ternary_type=ternary_type,
                         position_bits=position_bits)
    tensors, fields = read_back(result.path)
    expected = expected_tensors(model, position_bits, arch)

    assert set(tensors) == set(expected)
    assert ("output.weight" in tensors) == untied  # a tied head is not written: llama.cpp reuses token_embd
    for name, want in expected.items():
        got = tensors[name][1]
        assert got.shape == want.shape, name
        assert np.array_equal(got, want), f"{name}: max |difference| {np.abs(got - want).max()}"
    types = {name: kind for name, (kind, _) in tensors.items()}
    assert types["token_embd.weight"] == types["blk.1.ffn_down.weight"] == types["blk.0.attn_k.weight" if family != "gpt2"
                                                                                  else "blk.0.attn_qkv.weight"] == weight_type
    if untied:
        assert types["output.weight"] == weight_type  # row-wise at E bits, like the embedding
    if family == "gpt2":
        assert types["position_embd.weight"] == position_type
    assert {types[name] for name in f32_tensors} == {"F32"}
    assert result.file_bytes == result.path.stat().st_size and result.ratio > 1

    key = gguf.MODEL_ARCH_NAMES[arch]
    assert fields["general.architecture"] == key
    assert fields["general.file_type"] == gguf.LlamaFileType[f"MOSTLY_{weight_type}"]
    assert fields[f"{key}.embedding_length"] == 256 and fields[f"{key}.feed_forward_length"] == feed_forward
    assert fields[f"{key}.block_count"] == 2 and fields[f"{key}.attention.head_count"] == 4
    if family == "gpt2":
        assert fields["gpt2.context_length"] == 64
    else:
        assert fields[f"{key}.context_length"] == 1024 and fields[f"{key}.attention.head_count_kv"] == 2
        assert fields[f"{key}.rope.dimension_count"] == 64 and fields[f"{key}.vocab_size"] == len(tokenizer)
        assert fields[f"{key}.rope.freq_base"] == model.config.rope_parameters["rope_theta"]
        assert fields[f"{key}.attention.layer_norm_rms_epsilon"] == pytest.approx(model.config.rms_norm_eps)
    assert json.loads(fields["quantgpt.quantization_config"])["bits"] == bits


def test_llama_q_and_k_rows_are_permuted_with_their_per_row_scales(tmp_path, tokenizer):
    model = FAMILIES["llama"][0](tokenizer, bits="4-4-8")
    tensors, _ = read_back(export_gguf(model, tmp_path / "m.gguf", tokenizer=tokenizer).path)
    for name, module, heads in (("blk.1.attn_q.weight", model.model.layers[1].self_attn.q_proj, 4),
                                ("blk.1.attn_k.weight", model.model.layers[1].self_attn.k_proj, 2)):
        fake_quantized = module.weight_quantizer(module.weight.detach())  # float32 scale; the file's is fp16
        got = torch.from_numpy(tensors[name][1])
        assert torch.allclose(got, llama_cpp_permute(fake_quantized, heads), rtol=1e-3, atol=0), name
        assert not torch.allclose(got, fake_quantized, rtol=1e-3, atol=0), name

    # A per-row scale (none of our methods gives q_proj one, but the writer allows it) moves with its row.
    codes = torch.randint(-8, 8, (256, 256), dtype=torch.int8)
    scales = torch.linspace(0.01, 1.0, 256)
    entry = PackedTensor.from_codes("model.layers.0.self_attn.q_proj.weight", codes, 4, scales)
    qtype = gguf.GGMLQuantizationType.Q4_0
    blocks = _quantized_tensor(entry, "q", qtype, _llama_rotary_rows(entry.name, model.config))
    want = llama_cpp_permute(codes.float() * scales.half().float().unsqueeze(1), 4).numpy()
    assert np.array_equal(gguf.quants.dequantize(blocks, qtype), want)


def test_mistral_is_written_as_llama_with_its_window_as_context(tmp_path, tokenizer):
    model = rope_decoder(MistralForCausalLM, tokenizer, hidden_size=256, intermediate_size=512, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, sliding_window=256)
    tensors, fields = read_back(export_gguf(model, tmp_path / "m.gguf", tokenizer=tokenizer).path)
    assert fields["general.architecture"] == "llama" and fields["llama.context_length"] == 256
    expected = expected_tensors(model, None, gguf.MODEL_ARCH.LLAMA)
    assert all(np.array_equal(tensors[name][1], want) for name, want in expected.items())


def test_opt_is_refused_because_llama_cpp_has_no_opt(tmp_path, tokenizer):
    with pytest.raises(UsageError, match=r"^OPTForCausalLM \(model_type='opt'\) cannot be written as GGUF \(llama\.cpp "
                       r"has no OPT architecture\): supported are GPT2LMHeadModel, LlamaForCausalLM, .*Qwen2ForCausalLM"):
        export_gguf(quantized(tiny_opt(len(tokenizer))), tmp_path / "m.gguf", tokenizer=tokenizer)
    assert not (tmp_path / "m.gguf").exists()


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
    ternary = np.clip(codes, -1, 1)
    blocks = encode_blocks(ternary, scales, gguf.GGMLQuantizationType.Q2_0)
    assert blocks.shape == (1, 4 * 18) and blocks[0, :2].view(np.float16)[0] == 0.125  # d leads each block
    assert np.array_equal(reference_q2_0(blocks), ternary.astype(np.float32) * 0.125)


def test_a_width_no_block_fits_names_the_tensor_and_the_types_that_fit(tmp_path, tokenizer):
    with pytest.raises(UsageError, match=r"^token_embd\.weight \(transformer\.wte\.weight\): input width 96 is a "
                       r"multiple of no block of the GGUF types that hold its 2-bit codes exactly \(TQ2_0 \(256\), "
                       r"Q2_0 \(64\) columns\)"):
        export_gguf(gpt2(tokenizer, width=96), tmp_path / "m.gguf", tokenizer=tokenizer)
    assert not (tmp_path / "m.gguf").exists()
    with pytest.raises(UsageError, match=r"input width 48 is a multiple of no block .* 4-bit codes exactly \(Q4_0 \(32\)"):
        export_gguf(gpt2(tokenizer, width=48, bits="4-4-8"), tmp_path / "m.gguf", tokenizer=tokenizer)
    assert not (tmp_path / "m.gguf").exists()


@pytest.mark.parametrize("ternary_type", ["tq2_0", "tq1_0"])
def test_ternary_types_follow_each_tensor_s_input_width(tmp_path, tokenizer, ternary_type):
    """SmolLM2's shape in small: width 192 (3 x 64, no multiple of 256) and a feed-forward of 256.
    Matrices that read the width go to Q2_0, the down projection (input 256) to the TQ type."""
    model = rope_decoder(LlamaForCausalLM, tokenizer, "2-2-8", "tiny-llama", hidden_size=192, intermediate_size=256,
                         num_attention_heads=3, num_key_value_heads=1, head_dim=64)
    result = export_gguf(model, tmp_path / "m.gguf", tokenizer=tokenizer, ternary_type=ternary_type)
    tensors, fields = read_back(result.path)
    expected = expected_tensors(model, None, gguf.MODEL_ARCH.LLAMA)
    for name, want in expected.items():
        assert np.array_equal(tensors[name][1], want), name
    types = {name: kind for name, (kind, _) in tensors.items()}
    assert result.tensor_types == types
    for layer in range(2):
        for part in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up"):
            assert types[f"blk.{layer}.{part}.weight"] == "Q2_0"
        assert types[f"blk.{layer}.ffn_down.weight"] == ternary_type.upper()
    assert types["token_embd.weight"] == types["output.weight"] == "Q2_0"
    assert fields["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q2_0  # most of the bytes


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


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_position_bits_without_a_position_table_is_refused(tmp_path, tokenizer, family):
    model = FAMILIES[family][0](tokenizer, bits="2-2-8")
    with pytest.raises(UsageError, match="--position-bits 8: .* no position embedding table"):
        export_gguf(model, tmp_path / "m.gguf", tokenizer=tokenizer, position_bits=8)
    assert not list(tmp_path.iterdir())


def test_a_full_disk_is_a_one_line_output_error(tmp_path, tokenizer, monkeypatch):
    import errno

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", full)
    with pytest.raises(OutputPathError, match=r"m.gguf: cannot write the GGUF file \(No space left on device\)"):
        export_gguf(gpt2(tokenizer), tmp_path / "m.gguf", tokenizer=tokenizer)
    assert not list(tmp_path.iterdir())


def test_an_unknown_pre_tokenizer_is_refused_before_anything_is_encoded(tmp_path, tokenizer, monkeypatch):
    from tokenizers import pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from quantgpt.export import gguf_writer

    backend = tokenizer.backend_tokenizer
    metaspace = PreTrainedTokenizerFast(tokenizer_object=type(backend).from_str(backend.to_str()))
    metaspace.backend_tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    model = gpt2(tokenizer)

    def no_encoding(*args, **kwargs):
        raise AssertionError("a tensor was encoded before the tokenizer was checked")

    monkeypatch.setattr(gguf_writer, "_quantized_tensor", no_encoding)
    with pytest.raises(UsageError, match="llama.cpp does not know its pre-tokenizer .* not GPT-2's byte-level BPE"):
        export_gguf(model, tmp_path / "m.gguf", tokenizer=metaspace)
    assert not list(tmp_path.iterdir())
