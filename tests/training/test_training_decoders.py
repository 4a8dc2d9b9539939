"""The tiny random Llama, Qwen2 and OPT configurations, and the pipeline from the command line on one."""

from __future__ import annotations

import json
import math

import pytest

from quantgpt import load_quantized
from quantgpt.cli import main
from quantgpt.training.metrics import read_metrics
from quantgpt.model_configs import TINY_CONFIGS, load_model_config

from training_helpers import lm_flags

DECODER_CONFIGS = {"tiny-llama": "LlamaForCausalLM", "tiny-qwen2": "Qwen2ForCausalLM", "tiny-opt": "OPTForCausalLM"}


@pytest.mark.parametrize("name", DECODER_CONFIGS)
def test_tiny_decoder_configs_fit_256_wide_blocks(name):
    assert name in TINY_CONFIGS
    config = load_model_config(name, vocab_size=1234)
    assert config.architectures == [DECODER_CONFIGS[name]] and config.vocab_size == 1234
    assert config.num_hidden_layers == 2 and config.num_attention_heads == 4
    widths = [config.hidden_size, getattr(config, "intermediate_size", None) or config.ffn_dim]
    assert all(width % 256 == 0 for width in widths), widths
    if name != "tiny-opt":
        assert config.num_key_value_heads == 2  # grouped-query attention


@pytest.mark.slow
def test_finetune_then_quantize_a_tiny_llama(tmp_path, shared_data, tokenizer_dir, capsys):
    teacher_run, student_run = tmp_path / "teacher", tmp_path / "student"
    assert main([
        "finetune", "--model-config", "tiny-llama", "--tokenizer", str(tokenizer_dir), *lm_flags(shared_data, train_blocks=8),
        "--batch-size", "4", "--max-steps", "2", "--lr", "1e-3", "--eval-every", "2", "--output-dir", str(teacher_run),
    ]) == 0
    assert json.loads((teacher_run / "best" / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert main([
        "quantize", "--teacher", str(teacher_run / "best"), "--method", "quantgpt", "--bits", "2-2-8",
        *lm_flags(shared_data, train_blocks=8), "--batch-size", "4", "--max-steps", "2", "--eval-every", "2",
        "--num-negatives", "8", "--output-dir", str(student_run),
    ]) == 0
    last_train = [r for r in read_metrics(student_run) if r["kind"] == "train"][-1]
    assert math.isfinite(last_train["contrastive_loss"]) and math.isfinite(last_train["loss"])
    model = load_quantized(student_run / "best")
    assert type(model).__name__ == "LlamaForCausalLM" and str(model.quantization_config.bits) == "2-2-8"
    assert model.config._attn_implementation == "quantgpt"
