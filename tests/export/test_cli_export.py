"""`quantgpt export` and `quantgpt generate` from the command line, on a tiny model and the real tokenizer."""

from __future__ import annotations

import json

import pytest

from quantgpt.cli import main
from quantgpt.export import export_packed, generate_text
from quantgpt.export.packed_format import WEIGHTS_FILE

from export_helpers import quantized, snap_to_float16, tiny_gpt2

PROMPT = "The tower is 324 metres tall"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, gpt2_tokenizer):
    """A training run's layout: RUN/best holds the quantized model and its tokenizer."""
    model = quantized(tiny_gpt2(vocab=len(gpt2_tokenizer), init=0.2), "quantgpt", "2-2-8")
    snap_to_float16(model)  # lossless fp16 storage: greedy tokens must match exactly
    run = tmp_path_factory.mktemp("run")
    model.save_pretrained(run / "best")
    gpt2_tokenizer.save_pretrained(run / "best")
    return run, model


def test_export_then_generate_greedy(tmp_path, run_dir, gpt2_tokenizer, capsys):
    run, model = run_dir
    assert main(["export", str(run), str(tmp_path / "packed"), "--position-bits", "8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ratio"] == pytest.approx(report["fp32_bytes"] / report["packed_bytes"])
    assert report["ratio"] > 5  # a tiny model: the fp16 LayerNorms and biases weigh a lot here

    assert main(["generate", str(tmp_path / "packed"), "--prompt", PROMPT, "--max-new-tokens", "10", "--greedy"]) == 0
    printed = capsys.readouterr().out.rstrip("\n")
    # 8-bit positions change the model a little: compare with the packed model's own generation
    # below, and with the fake-quantized model through an export that keeps fp16 positions.
    assert printed.startswith(PROMPT) and len(printed) > len(PROMPT)

    assert main(["export", str(run / "best"), str(tmp_path / "packed16")]) == 0
    capsys.readouterr()
    assert main(["generate", str(tmp_path / "packed16"), "--prompt", PROMPT, "--max-new-tokens", "10"]) == 0
    expected = PROMPT + generate_text(model, gpt2_tokenizer, PROMPT, max_new_tokens=10)
    assert capsys.readouterr().out.rstrip("\n") == expected


def test_generate_with_an_explicit_tokenizer_and_sampling(tmp_path, run_dir, shared_data, capsys):
    _, model = run_dir
    export_packed(model, tmp_path / "packed")  # no tokenizer beside it
    assert main(["generate", str(tmp_path / "packed"), "--prompt", PROMPT]) == 2
    assert "no tokenizer files" in capsys.readouterr().err
    arguments = ["generate", str(tmp_path / "packed"), "--prompt", PROMPT, "--tokenizer", str(shared_data / "gpt2-tokenizer")]
    sampled = arguments + ["--do-sample", "--top-k", "20", "--seed", "3", "--max-new-tokens", "6"]
    assert main(sampled) == 0
    first = capsys.readouterr().out
    assert main(sampled) == 0
    assert capsys.readouterr().out == first  # the seed fixes the sample


def test_generate_refuses_a_damaged_directory(tmp_path, run_dir, capsys):
    run, _ = run_dir
    assert main(["export", str(run), str(tmp_path / "packed")]) == 0
    data = bytearray((tmp_path / "packed" / WEIGHTS_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "packed" / WEIGHTS_FILE).write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["generate", str(tmp_path / "packed"), "--prompt", PROMPT]) == 2
    error = capsys.readouterr().err
    assert error.startswith("quantgpt: error:") and "SHA-256 differs" in error


def test_export_refuses_a_missing_run(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nothing"), str(tmp_path / "packed")]) == 2
    assert "no such directory" in capsys.readouterr().err
