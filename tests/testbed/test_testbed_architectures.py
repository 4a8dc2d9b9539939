"""`quantgpt run --architecture llama|qwen2|opt`: the teacher's shape, its cache key, a tiny job."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from quantgpt.cli import main
from quantgpt.testbed.recipe import DEFAULT_TEACHER, RECIPE_FORMAT, TeacherRecipe, SCRATCH_TEACHER


def test_a_gpt2_teacher_keeps_the_key_it_had_before_the_architecture_field():
    settings = {k: v for k, v in SCRATCH_TEACHER.to_dict().items() if k != "architecture"}
    before = hashlib.sha256(json.dumps({"format": RECIPE_FORMAT, **settings}, sort_keys=True).encode()).hexdigest()[:12]
    assert SCRATCH_TEACHER.architecture == "gpt2" and SCRATCH_TEACHER.key() == before
    keys = {dataclasses.replace(SCRATCH_TEACHER, architecture=name).key() for name in ("llama", "qwen2", "opt")}
    assert len(keys) == 3 and before not in keys


@pytest.mark.parametrize(("architecture", "class_name"), [("llama", "LlamaForCausalLM"), ("qwen2", "Qwen2ForCausalLM"), ("opt", "OPTForCausalLM")])
def test_decoder_teacher_configuration(architecture, class_name):
    config = dataclasses.replace(DEFAULT_TEACHER, architecture=architecture, dropout=0.0).model_config()
    assert config.architectures == [class_name]
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (8192, 256, 4, 4)
    assert config.max_position_embeddings == 256 and config.bos_token_id == config.eos_token_id == 0
    assert config.tie_word_embeddings
    if architecture == "opt":
        assert config.ffn_dim == 1024
    else:
        assert config.intermediate_size == 768 and config.num_key_value_heads == 2  # 8/3 x 256 -> 768


def test_unknown_architecture_names_the_field():
    with pytest.raises(ValueError, match="architecture='mamba'"):
        TeacherRecipe(architecture="mamba")


@pytest.mark.slow
def test_tiny_job_with_a_llama_teacher(tmp_path, shared_data):
    out, cache = tmp_path / "results", tmp_path / "cache"
    assert main(["run", "--recipe", "tiny", "--architecture", "llama", "--methods", "quantgpt", "--out", str(out),
                 "--cache", str(cache), "--data-dir", str(shared_data), "--no-progress", "--threads", "1"]) == 0
    teacher_config = json.loads(next(cache.glob("teacher-*/model-config/config.json")).read_text())
    assert teacher_config["architectures"] == ["LlamaForCausalLM"]
    rows = {row["method"]: row for row in json.loads((out / "table1.json").read_text())["rows"]}
    assert rows["quantgpt"]["size_mib"] < rows["full precision"]["size_mib"]
    assert "Teacher: Llama 1 layers" in (out / "table1.md").read_text()
