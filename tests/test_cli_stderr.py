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


@pytest.fixture
def library_lines():
    """What Transformers and datasets log while a test runs, at their default level (another test
    module may have turned Transformers' down). Their handlers hold the stderr of the moment they
    were made, which pytest's capture has since replaced, so the records are taken here instead."""
    import logging

    from datasets.utils import logging as datasets_logging
    from transformers.utils import logging as transformers_logging

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    levels = transformers_logging.get_verbosity(), datasets_logging.get_verbosity()
    transformers_logging.set_verbosity_warning()
    datasets_logging.set_verbosity_warning()
    handler = Keep(logging.WARNING)
    loggers = [logging.getLogger("transformers"), logging.getLogger("datasets")]
    for logger in loggers:
        logger.addHandler(handler)
    yield records
    for logger in loggers:
        logger.removeHandler(handler)
    transformers_logging.set_verbosity(levels[0])
    datasets_logging.set_verbosity(levels[1])


def _one_error_line(capfd, argv) -> str:
    from quantgpt.cli import main

    capfd.readouterr()
    status = main(argv)
    err = capfd.readouterr().err
    assert status == 2 and len(err.splitlines()) == 1 and err.startswith("quantgpt: error: "), err
    return err


def test_a_checkpoint_mismatch_is_our_line_without_transformers_load_report(tmp_path, library_lines, capfd):
    from safetensors.torch import load_file, save_file
    from tiny_models import tiny_model

    from quantgpt import QuantConfig, quantize_model

    quantize_model(tiny_model("tiny", seed=0).eval(), QuantConfig(bits="4-4-8")).save_pretrained(tmp_path / "model")
    state = load_file(tmp_path / "model" / "model.safetensors")
    del state["transformer.ln_f.weight"]
    save_file(state, tmp_path / "model" / "model.safetensors", metadata={"format": "pt"})
    err = _one_error_line(capfd, ["export", str(tmp_path / "model"), str(tmp_path / "out")])
    assert "missing ['transformer.ln_f.weight']" in err
    assert [r.getMessage() for r in library_lines] == []


@pytest.mark.parametrize("layout", ["--train-file", "--dataset folder"])
def test_a_data_error_is_our_line_without_datasets_log(tmp_path, shared_data, library_lines, capfd, layout):
    from tiny_models import tiny_model

    tiny_model("tiny", seed=0, vocab_size=50257).save_pretrained(tmp_path / "teacher")
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("train.jsonl", "validation.jsonl"):
        (folder / name).write_text('{"text": "a"}\nnot json\n')
    data = (["--dataset", "text", "--train-file", str(folder / "train.jsonl"), "--eval-file", str(folder / "validation.jsonl")]
            if layout == "--train-file" else ["--dataset", str(folder)])
    _one_error_line(capfd, ["quantize", "--teacher", str(tmp_path / "teacher"), "--output-dir", str(tmp_path / "run"),
                            "--tokenizer", str(shared_data / "gpt2-tokenizer"), "--block-size", "16", *data])
    assert [r.getMessage() for r in library_lines] == []


def test_a_prompt_error_on_a_gguf_file_is_our_line_without_llama_cpp_s_log(tmp_path, gpt2_tokenizer, capfd):
    """llama.cpp warns on load that its context (padded to 256) exceeds a 64-position model's; the
    prompt error after it must be the only line."""
    pytest.importorskip("llama_cpp")
    import torch
    from tiny_models import tiny_config
    from transformers import GPT2LMHeadModel

    from quantgpt import QuantConfig, quantize_model
    from quantgpt.export import export_gguf

    torch.manual_seed(0)
    config = tiny_config("tiny", n_embd=64, n_head=2, n_positions=64, vocab_size=len(gpt2_tokenizer),
                         bos_token_id=50256, eos_token_id=50256)
    model = quantize_model(GPT2LMHeadModel(config).eval(), QuantConfig("quantgpt", "8-8-8"))
    path = export_gguf(model, tmp_path / "tiny.gguf", tokenizer=gpt2_tokenizer).path
    err = _one_error_line(capfd, ["generate", str(path), "--prompt", "word " * 100, "--max-new-tokens", "4"])
    assert "exceed the model's context of 64" in err


def test_a_fresh_model_takes_its_tokenizer_s_special_ids_and_loads_without_warnings(tmp_path, shared_data, library_lines, capfd):
    """GPT-2's config names token 50256 for bos/eos; beside a 512-token tokenizer the model would hold
    ids outside its vocabulary and Transformers would warn on every later load."""
    import json

    from quantgpt.cli import main
    from quantgpt.tasks.language_modeling import load_lm_text
    from quantgpt.testbed.tokenizer import save_tokenizer, train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(load_lm_text("wikitext-2", "valid", shared_data)[:400], vocab_size=512)
    save_tokenizer(tokenizer, tmp_path / "tokenizer")
    data = ["--task", "lm", "--dataset", "wikitext-2", "--data-dir", str(shared_data), "--block-size", "32"]
    assert main(["finetune", "--model-config", "tiny", "--tokenizer", str(tmp_path / "tokenizer"), *data,
                 "--train-split", "testbed-train", "--eval-split", "testbed-select", "--max-steps", "1",
                 "--max-eval-examples", "2", "--no-progress", "--output-dir", str(tmp_path / "run")]) == 0
    config = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert config["bos_token_id"] == config["eos_token_id"] == tokenizer.eos_token_id < 512
    capfd.readouterr()
    assert main(["evaluate", str(tmp_path / "run" / "best"), *data, "--max-eval-examples", "2", "--json"]) == 0
    assert capfd.readouterr().err == ""
    assert [r.getMessage() for r in library_lines] == []
