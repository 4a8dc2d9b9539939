"""`quantgpt export --format gguf` and `quantgpt generate FILE.gguf` from the command line (no llama.cpp needed)."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from transformers import GPT2LMHeadModel

from export_helpers import quantized
from quantgpt.cli import main
from quantgpt.tasks.language_modeling import load_lm_text
from quantgpt.testbed.tokenizer import train_bpe_tokenizer
from tiny_models import tiny_config

pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, shared_data):
    """A training run's layout: RUN/best holds a 2-2-8 model of width 256 and its tokenizer."""
    tokenizer = train_bpe_tokenizer(load_lm_text("wikitext-2", "valid", shared_data)[:400], vocab_size=512)
    torch.manual_seed(0)
    config = tiny_config("tiny", n_embd=256, n_head=4, n_positions=64, vocab_size=len(tokenizer),
                         bos_token_id=0, eos_token_id=0)
    run = tmp_path_factory.mktemp("run")
    quantized(GPT2LMHeadModel(config).eval(), bits="2-2-8").save_pretrained(run / "best")
    tokenizer.save_pretrained(run / "best")
    return run


def test_export_writes_one_gguf_file(tmp_path, run_dir, capsys):
    out = tmp_path / "q228.gguf"
    assert main(["export", str(run_dir), str(out), "--format", "gguf", "--ternary-type", "tq1_0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["file"] == str(out) and report["file_bytes"] == out.stat().st_size
    assert report["ratio"] == pytest.approx(report["fp32_bytes"] / report["file_bytes"])
    assert report["tensor_types"]["token_embd.weight"] == report["tensor_types"]["blk.0.ffn_up.weight"] == "TQ1_0"
    assert report["tensor_types"]["position_embd.weight"] == "F16"
    assert main(["export", str(run_dir), str(out), "--format", "gguf"]) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--ternary-type", "tq1_0"], "--ternary-type applies to --format gguf only"),
        ([], "ends in .gguf but --format is packed"),
    ],
)
def test_export_flags_that_do_not_fit_the_format_are_refused(tmp_path, run_dir, capsys, arguments, message):
    assert main(["export", str(run_dir), str(tmp_path / "q.gguf"), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "q.gguf").exists()


def test_generate_without_llama_cpp_says_how_to_install_it(tmp_path, run_dir, monkeypatch, capsys):
    out = tmp_path / "q228.gguf"
    assert main(["export", str(run_dir), str(out), "--format", "gguf"]) == 0
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now fails as if not installed
    capsys.readouterr()
    assert main(["generate", str(out), "--prompt", "The tower is"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("quantgpt: error: running a .gguf file needs llama.cpp's Python binding")
    assert "pip install 'quantgpt[gguf]'" in error and len(error.strip().splitlines()) == 1


def test_generate_refuses_a_gguf_name_that_is_not_a_gguf_file(tmp_path, capsys):
    fake = tmp_path / "notes.gguf"
    fake.write_text("not a model")
    assert main(["generate", str(fake), "--prompt", "The tower is"]) == 2
    assert "not a GGUF file" in capsys.readouterr().err
