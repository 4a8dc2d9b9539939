"""Size accounting reproduces the paper's Size column (docs/method.md#size-accounting), from configs alone."""

import json

import pytest

from quantgpt.cli import main
from quantgpt.model_configs import load_model_config
from quantgpt.size import count_parameters, model_size

PAPER = {  # model: (fp32 MiB, {bits: MiB}, tolerance)
    "gpt2": (474.7, {"8-8-8": 121.4, "4-4-8": 62.4, "2-2-8": 33.0}, 0.1),
    "bart-base": (532.0, {"8-8-8": 138.1, "4-4-8": 72.4, "2-2-8": 39.6}, 0.5),
}


@pytest.mark.parametrize("name", PAPER)
def test_paper_sizes(name):
    fp32, quantized, tolerance = PAPER[name]
    config = load_model_config(name)
    for bits, expected in quantized.items():
        report = model_size(config, bits)
        assert report.fp32_mib == pytest.approx(fp32, abs=tolerance)
        assert report.quantized_mib == pytest.approx(expected, abs=tolerance), bits


def test_gpt2_parameter_counts():
    counts = count_parameters(load_model_config("gpt2"))
    assert counts.total == 124_439_808
    assert counts.embedding == 50257 * 768 and counts.position == 1024 * 768
    assert counts.weights == 12 * (768 * 2304 + 768 * 768 + 768 * 3072 * 2)


def test_exact_accounting_counts_each_parameter_once():
    counts = count_parameters(load_model_config("gpt2"))
    report = model_size(load_model_config("gpt2"), "2-2-8", accounting="exact")
    expected_bits = (counts.weights + counts.embedding) * 2 + (counts.position + counts.other) * 32
    assert report.quantized_mib == pytest.approx(expected_bits / 8 / 2**20, abs=1e-3)


def test_cli_json(capsys):
    assert main(["size", "--model-config", "gpt2", "--bits", "2-2-8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"fp32_mib", "quantized_mib", "ratio"}
    assert data["quantized_mib"] == pytest.approx(33.0, abs=0.1)
    assert data["ratio"] == pytest.approx(474.7 / 33.0, abs=0.1)


def test_cli_reads_a_config_json_path(tmp_path, capsys):
    load_model_config("gpt2").save_pretrained(tmp_path)
    assert main(["size", "--model-config", str(tmp_path / "config.json"), "--bits", "8-8-8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["quantized_mib"] == pytest.approx(121.4, abs=0.1)


def test_cli_bad_bits_prints_one_line_and_exits_2(capsys):
    assert main(["size", "--model-config", "gpt2", "--bits", "2-2-16"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "quantgpt: error: bits.activation=16 is not allowed: use an integer from 2 to 8"


def test_cli_config_file_supplies_flags(tmp_path, capsys):
    (tmp_path / "size.yaml").write_text("model-config: bart-base\nbits: 2-2-8\njson: true\n")
    assert main(["size", "--config", str(tmp_path / "size.yaml")]) == 0
    assert json.loads(capsys.readouterr().out)["quantized_mib"] == pytest.approx(39.6, abs=0.5)
    (tmp_path / "bad.yaml").write_text("model-config: gpt2\nbitz: 2-2-8\n")
    assert main(["size", "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "unknown keys ['bitz']" in capsys.readouterr().err


def test_cli_config_equals_form_supplies_flags(tmp_path, capsys):
    (tmp_path / "size.yaml").write_text("model-config: bart-base\nbits: 2-2-8\njson: true\n")
    assert main(["size", f"--config={tmp_path / 'size.yaml'}"]) == 0
    assert json.loads(capsys.readouterr().out)["quantized_mib"] == pytest.approx(39.6, abs=0.5)
    (tmp_path / "bad.yaml").write_text("model-config: gpt2\nbitz: 2-2-8\n")
    assert main(["size", f"--config={tmp_path / 'bad.yaml'}"]) == 2
    assert "unknown keys ['bitz']" in capsys.readouterr().err
    assert main(["size", "--model-config", "gpt2", "--config"]) == 2
    assert "--config: expected one argument" in capsys.readouterr().err
