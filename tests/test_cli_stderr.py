"""A command that succeeds prints nothing on stderr: not at import (no torchao warnings through
Transformers), not while loading or writing a model (no progress bars)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

QUANTGPT = Path(sys.executable).with_name("quantgpt")


@pytest.mark.parametrize("argv", [["--help"], ["size", "--model-config", "gpt2", "--bits", "2-2-8"]], ids=["help", "size"])
def test_a_clean_command_prints_nothing_on_stderr(argv):
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    result = subprocess.run([str(QUANTGPT), *argv], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert result.stderr == ""


def test_export_and_generate_print_nothing_on_stderr(tmp_path, gpt2_tokenizer, capfd):
    from tiny_models import tiny_config
    from transformers import GPT2LMHeadModel

    from quantgpt import QuantConfig, quantize_model
    from quantgpt.cli import main

    config = tiny_config("tiny", n_layer=1, n_positions=32, vocab_size=len(gpt2_tokenizer), bos_token_id=0,
                         eos_token_id=0)
    model = quantize_model(GPT2LMHeadModel(config).eval(), QuantConfig(bits="2-2-8"))
    model.save_pretrained(tmp_path / "model")
    gpt2_tokenizer.save_pretrained(tmp_path / "model")
    capfd.readouterr()
    assert main(["export", str(tmp_path / "model"), str(tmp_path / "packed")]) == 0
    assert main(["generate", str(tmp_path / "packed"), "--prompt", "The tower", "--max-new-tokens", "3"]) == 0
    assert main(["size", "--model-config", str(tmp_path / "model" / "config.json"), "--bits", "2-2-8"]) == 0
    captured = capfd.readouterr()
    assert captured.err == "" and "packed model written" in captured.out
