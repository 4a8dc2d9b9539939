"""The exporter: what is stored for each module, the bytes it takes, and where the model comes from."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors import safe_open

from quantgpt import CheckpointError
from quantgpt.export import DenseTensor, PackedTensor, export_packed, packed_entries, read_packed
from quantgpt.export.packed_format import INDEX_FILE, WEIGHTS_FILE

from export_helpers import PACT_NEG, PACT_POS, quantized, tiny_bart, tiny_gpt2


def _by_name(entries):
    return {entry.name: entry for entry in entries}


def test_entries_of_a_tiny_gpt2():
    model = quantized(tiny_gpt2(), "quantgpt", "2-2-8")
    entries, model_config, extra = packed_entries(model)
    stored = _by_name(entries)

    fused = stored["transformer.h.0.attn.c_attn.weight"]
    assert isinstance(fused, PackedTensor) and fused.bits == 2
    assert fused.shape == (96, 32)  # (out, in): the Conv1D's (32, 96) transposed
    module = model.transformer.h[0].attn.c_attn
    codes, scale, _ = module.weight_quantizer.codes(module.weight)
    assert torch.equal(fused.codes(), codes.T)
    assert fused.scale.shape == () and float(fused.scale) == pytest.approx(float(scale))

    embedding = stored["transformer.wte.weight"]
    assert embedding.shape == (100, 32) and embedding.scale.shape == (100,)  # one scale per token
    assert "lm_head.weight" not in stored  # tied: stored once, the head is recorded as sharing it
    assert extra["modules"]["lm_head"] == {
        "kind": "tied_head", "source": "transformer.wte", "bias": None, "input": {"bits": 8, "symmetric": True},
    }
    assert extra["modules"]["transformer.h.1.mlp.c_proj"]["input"] == {"bits": 8, "symmetric": False}  # GeLU output
    assert extra["attention"] == {
        "bits": 8, "quantize_values": True, "modules": ["transformer.h.0.attn", "transformer.h.1.attn"],
    }
    assert extra["quantization_config"]["method"] == "quantgpt" and extra["quantization_config"]["bits"] == "2-2-8"
    assert "quantization_config" not in model_config and model_config["n_embd"] == 32

    dense = {name for name, entry in stored.items() if isinstance(entry, DenseTensor)}
    assert all(stored[name].tensor.dtype == torch.float16 for name in dense)
    assert "transformer.wpe.weight" in dense and "transformer.ln_f.weight" in dense
    assert not any("weight_quantizer" in name for name in stored)


def test_pact_stores_two_scales():
    entries, _, _ = packed_entries(quantized(tiny_gpt2(), "pact", "4-4-8"))
    fused = _by_name(entries)["transformer.h.0.attn.c_attn.weight"]
    assert float(fused.scale) == pytest.approx(PACT_POS / 7) and float(fused.scale_neg) == pytest.approx(PACT_NEG / 7)


def test_bart_stores_the_shared_embedding_once():
    entries, _, extra = packed_entries(quantized(tiny_bart(), "quantgpt", "2-2-8"))
    stored = _by_name(entries)
    assert "model.shared.weight" in stored
    assert not {"model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight"} & set(stored)
    for name in ("model.encoder.embed_tokens", "model.decoder.embed_tokens"):
        assert extra["modules"][name] == {
            "kind": "tied_embedding", "source": "model.shared", "padding_idx": 1, "embed_scale": pytest.approx(math.sqrt(32)),
        }
    assert isinstance(stored["final_logits_bias"], DenseTensor)


def _stored_bytes(directory) -> dict[str, int]:
    with safe_open(str(directory / WEIGHTS_FILE), "pt") as handle:
        return {key: handle.get_tensor(key).numel() * handle.get_tensor(key).element_size() for key in handle.keys()}


def test_file_size_accounting_2_2_8(tmp_path):
    result = export_packed(quantized(tiny_gpt2(), "quantgpt", "2-2-8"), tmp_path / "packed")
    sizes = _stored_bytes(tmp_path / "packed")
    # Ternary codes take ceil(n / 5) bytes: c_attn 32*96 = 3072 -> 615, c_proj 1024 -> 205,
    # c_fc and mlp.c_proj 4096 -> 820, the embedding 100*32 = 3200 -> 640.
    assert sizes["transformer.h.0.attn.c_attn.weight.codes"] == 615
    assert sizes["transformer.h.0.attn.c_proj.weight.codes"] == 205
    assert sizes["transformer.h.1.mlp.c_fc.weight.codes"] == 820
    assert sizes["transformer.wte.weight.codes"] == 640
    assert sizes["transformer.wte.weight.scale"] == 2 * 100  # fp16, one per row
    assert sizes["transformer.h.0.attn.c_attn.weight.scale"] == 2
    # Per layer: codes 615 + 205 + 820 + 820 = 2460, four fp16 scales 8, LayerNorms 4 * 32 * 2 = 256,
    # biases (96 + 32 + 128 + 32) * 2 = 576: 3300. Two layers 6600, embedding 640 + 200,
    # position embedding 64 * 32 * 2 = 4096, final LayerNorm 128: 11664 bytes of tensors.
    assert sum(sizes.values()) == 11664
    on_disk = (tmp_path / "packed" / WEIGHTS_FILE).stat().st_size + (tmp_path / "packed" / INDEX_FILE).stat().st_size
    assert result.packed_bytes == on_disk
    # fp32: 4 bytes for each of the 2 * 12,704 + 3200 + 2048 + 64 parameters (tied head once).
    assert result.fp32_bytes == 4 * (2 * (2 * 64 + 32 * 96 + 96 + 32 * 32 + 32 + 32 * 128 + 128 + 128 * 32 + 32) + 3200 + 2048 + 64)


def test_file_size_accounting_nibbles_int8_and_8_bit_positions(tmp_path):
    export_packed(quantized(tiny_gpt2(), "lsq", "4-8-8"), tmp_path / "packed", position_bits=8)
    sizes = _stored_bytes(tmp_path / "packed")
    assert sizes["transformer.h.0.attn.c_attn.weight.codes"] == 3072 // 2  # two 4-bit codes a byte
    assert sizes["transformer.h.0.attn.c_proj.weight.codes"] == 1024 // 2
    assert sizes["transformer.wte.weight.codes"] == 3200  # 8 bits: one int8 each
    assert sizes["transformer.wpe.weight.codes"] == 64 * 32  # 8-bit positions instead of 4096 fp16 bytes
    assert sizes["transformer.wpe.weight.scale"] == 2 * 64
    assert "transformer.wpe.weight" not in sizes
    entries, _, extra = read_packed(tmp_path / "packed")
    assert extra["dequantize_at_load"] == ["transformer.wpe.weight"]
    assert extra["position_embedding"] == {"bits": 8, "method": "rtn-row-symmetric"}


def test_refuses_a_model_that_is_not_quantized(tmp_path):
    with pytest.raises(ValueError, match="not quantized"):
        export_packed(tiny_gpt2(), tmp_path / "packed")


def test_refuses_bad_position_bits(tmp_path):
    with pytest.raises(ValueError, match="position_bits=1"):
        export_packed(quantized(tiny_gpt2()), tmp_path / "packed", position_bits=1)


def test_keeps_an_existing_export_unless_asked(tmp_path):
    model = quantized(tiny_gpt2())
    export_packed(model, tmp_path / "packed")
    with pytest.raises(FileExistsError):
        export_packed(model, tmp_path / "packed")
    export_packed(model, tmp_path / "packed", overwrite=True)


@pytest.mark.parametrize("layout", ["model_dir", "run_dir"])
def test_exports_from_a_saved_model_or_a_run(tmp_path, gpt2_tokenizer, layout):
    model = quantized(tiny_gpt2(vocab=len(gpt2_tokenizer)), "laq", "2-2-8")
    saved = tmp_path / "run" / "best" if layout == "run_dir" else tmp_path / "model"
    model.save_pretrained(saved)
    gpt2_tokenizer.save_pretrained(saved)
    source = tmp_path / "run" if layout == "run_dir" else saved
    export_packed(source, tmp_path / "packed")
    assert (tmp_path / "packed" / "tokenizer.json").is_file()
    assert (tmp_path / "packed" / "generation_config.json").is_file()
    from_dir = _by_name(read_packed(tmp_path / "packed")[0])
    from_model = _by_name(packed_entries(model)[0])
    assert torch.equal(from_dir["transformer.h.1.mlp.c_fc.weight"].codes(), from_model["transformer.h.1.mlp.c_fc.weight"].codes())


def test_refuses_a_directory_without_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither it nor"):
        export_packed(tmp_path / "empty", tmp_path / "packed")
    with pytest.raises(FileNotFoundError):
        export_packed(tmp_path / "missing", tmp_path / "packed")
