"""Size accounting for Llama, Qwen2 and OPT, counted by hand on the tiny configurations (vocab 1000)."""

from __future__ import annotations

import json

import pytest

from quantgpt.cli import main
from quantgpt.model_configs import load_model_config
from quantgpt.size import count_parameters, model_size

MIB = 2**20
V = 1000
# Hidden 256, 2 layers, 4 heads of 64; Llama / Qwen2 with 2 key/value heads (k, v project to 128).
ATTENTION_GQA = 256 * 256 + 256 * 128 + 256 * 128 + 256 * 256  # q, k, v, o
BY_HAND = {  # name: (weights, embedding, position, other)
    # SwiGLU 512: gate, up, down; RMSNorm x2 a layer + the final one; an untied head counts with the embedding.
    "tiny-llama": (2 * (ATTENTION_GQA + 3 * 256 * 512), 2 * V * 256, 0, 5 * 256),
    # SwiGLU 768; biases on q, k, v (256 + 128 + 128 a layer); tied head.
    "tiny-qwen2": (2 * (ATTENTION_GQA + 3 * 256 * 768), V * 256, 0, 5 * 256 + 2 * 512),
    # 4 projections of 256 x 256, fc1 / fc2 of 512; learned positions 1024 + OPT's offset 2; biases of
    # every linear (4 x 256 + 512 + 256) and 2 LayerNorms (weight and bias) a layer, the final LayerNorm.
    "tiny-opt": (2 * (4 * 256 * 256 + 2 * 256 * 512), V * 256, 1026 * 256, 2 * (4 * 256 + 512 + 256 + 2 * 512) + 512),
}


@pytest.mark.parametrize("name", BY_HAND)
def test_parameter_counts_by_hand(name):
    weights, embedding, position, other = BY_HAND[name]
    counts = count_parameters(load_model_config(name, vocab_size=V))
    assert (counts.weights, counts.embedding, counts.position, counts.other) == (weights, embedding, position, other)


@pytest.mark.parametrize("name", BY_HAND)
@pytest.mark.parametrize("accounting", ["paper", "exact"])
def test_sizes_by_hand(name, accounting):
    weights, embedding, position, other = BY_HAND[name]
    config = load_model_config(name, vocab_size=V)
    report = model_size(config, "2-2-8", accounting)
    bits = 2 * weights + 2 * embedding + 32 * (position + other)
    if accounting == "paper":  # the paper's second count of norms and biases, at W bits (docs/method.md#size-accounting)
        bits += 2 * other
    assert report.quantized_mib == pytest.approx(bits / 8 / MIB, abs=1e-3)
    assert report.fp32_mib == pytest.approx(4 * (weights + embedding + position + other) / MIB, abs=1e-3)


def test_an_untied_head_kept_full_precision_counts_at_32_bits():
    config = load_model_config("tiny-llama", vocab_size=V)
    counts = count_parameters(config, quantize_lm_head=False)
    assert counts.embedding == V * 256 and counts.head == V * 256
    kept, quantized = model_size(config, "2-2-8", "exact", quantize_lm_head=False), model_size(config, "2-2-8", "exact")
    assert kept.quantized_mib - quantized.quantized_mib == pytest.approx(V * 256 * 30 / 8 / MIB, abs=1e-3)
    assert kept.fp32_mib == quantized.fp32_mib


@pytest.mark.parametrize("name", BY_HAND)
def test_cli_reads_the_config_json(tmp_path, capsys, name):
    load_model_config(name, vocab_size=V).save_pretrained(tmp_path)
    assert main(["size", "--model-config", str(tmp_path / "config.json"), "--bits", "4-4-8", "--accounting", "exact", "--json"]) == 0
    weights, embedding, position, other = BY_HAND[name]
    expected = (4 * (weights + embedding) + 32 * (position + other)) / 8 / MIB
    assert json.loads(capsys.readouterr().out)["quantized_mib"] == pytest.approx(expected, abs=1e-3)


def test_tiny_names_are_known_to_size():
    assert load_model_config("tiny-llama").model_type == "llama"
    assert load_model_config("tiny-opt").model_type == "opt"
