"""Flags from YAML files, and one-line errors (exit status 2) for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from quantgpt import QuantConfig, quantize_model
from quantgpt.cli import _apply_yaml_defaults, build_parser, main
from quantgpt.commands.finetune import training_config_from_args
from quantgpt.training import TrainingConfig
from quantgpt.training.metrics import read_metrics
from transformers import GPT2LMHeadModel


def test_yaml_drives_a_run_and_the_command_line_wins(tmp_path, shared_data, tiny_teacher):
    settings = {
        "teacher": str(tiny_teacher), "method": "lsq", "bits": "4-4-8",
        "task": "lm", "dataset": "wikitext-2", "data_dir": str(shared_data),
        "train_split": "testbed-train", "eval_split": "testbed-select", "block_size": 32,
        "max_train_examples": 8, "max_eval_examples": 2, "batch_size": 2, "max_steps": 3,
        "learning_rate": "2.0e-4", "quantizer_learning_rate": 5.0e-3, "log_every": 1, "progress": False,
        "output_dir": str(tmp_path / "run"),
    }
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(settings))
    assert main(["quantize", "--config", str(config_file), "--max-steps", "2"]) == 0
    record = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert record["quantization"]["bits"] == "4-4-8" and record["quantization"]["method"] == "lsq"
    assert record["training"]["learning_rate"] == 2e-4 and record["training"]["quantizer_learning_rate"] == 5e-3
    assert record["training"]["max_steps"] == 2  # the command line overrides the file
    assert record["task"]["block_size"] == 32 and record["task"]["max_train_examples"] == 8
    rates = [(r["lr"], r["lr_quantizers"]) for r in read_metrics(tmp_path / "run") if r["kind"] == "train"]
    assert rates == [(2e-4, 5e-3), (1e-4, 2.5e-3)]


def test_paper_configs_parse_with_the_paper_settings():
    root = Path(__file__).resolve().parents[2] / "configs" / "paper"
    files = sorted(root.glob("*.yaml"))
    lm_files = [f for f in files if f.name.split("-")[0] in ("wikitext2", "ptb", "wikitext103")]
    assert len(lm_files) == 3 * (1 + 4 * 3)  # 3 corpora x (teacher + 4 methods x 3 bit widths)
    for file in files:
        _, subparsers = build_parser()
        command = "finetune" if file.stem.endswith("teacher") else "quantize"
        _apply_yaml_defaults(subparsers[command], str(file))
        args = subparsers[command].parse_args([])
        if file in lm_files and command == "quantize":
            assert (args.learning_rate, args.quantizer_learning_rate, args.batch_size, args.block_size) == (5e-4, 1e-3, 32, 512), file.name
            if args.method == "quantgpt":
                assert args.num_negatives == (64 if file.name.startswith("ptb") else 32), file.name
            assert args.num_epochs == {"wikitext2": 80, "ptb": 120, "wikitext103": 8}[file.name.split("-")[0]], file.name
            assert QuantConfig(args.method, args.bits).bits is not None


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--teacher", "{tmp}/missing"], "--teacher {tmp}/missing: no such directory"),
        (["--teacher", "{tmp}"], "no config.json"),
        (["--teacher", "{quantized}"], "is quantized"),
        (["--teacher", "{teacher}", "--bits", "2-2"], "bits='2-2' is not allowed"),
        (["--teacher", "{teacher}", "--bits", "9-2-8"], "bits.weight=9 is not allowed"),
        (["--teacher", "{teacher}", "--data-dir", "{tmp}/no-data"], "--data-dir {tmp}/no-data: no such directory"),
        (["--teacher", "{teacher}", "--dataset", "ptb", "--data-dir", "{tmp}"], "ptb/ptb.valid.txt: file not found"),
        (["--teacher", "{teacher}", "--batch-size", "3", "--gradient-accumulation-steps", "2"], "batch_size=3"),
        (["--teacher", "{teacher}", "--lr", "-1"], "--learning-rate -1.0: allowed is a number > 0"),
        (["--teacher", "{teacher}", "--method", "pact", "--lam", "0.2"],
         "--lam 0.2 sets the contrastive loss, which --method pact trains without: add --contrastive or drop --lam"),
        (["--teacher", "{teacher}", "--no-contrastive", "--tau", "0.2"],
         "--tau 0.2 sets the contrastive loss, which --no-contrastive switches off: drop --tau"),
        (["--teacher", "{teacher}", "--lam", "0", "--contrastive-layer", "1"],
         "--layer 1 sets the contrastive loss, which --lam 0 switches off: drop --layer"),
    ],
)
def test_quantize_bad_input_is_one_line_and_status_2(flags, message, tmp_path, shared_data, tiny_teacher, capsys):
    quantized = tmp_path / "quantized"
    quantize_model(GPT2LMHeadModel.from_pretrained(tiny_teacher), QuantConfig()).save_pretrained(quantized)
    values = {"tmp": str(tmp_path), "teacher": str(tiny_teacher), "quantized": str(quantized)}
    base = ["--data-dir", str(shared_data), "--train-split", "testbed-train", "--output-dir", str(tmp_path / "run")]
    args = ["quantize", *base, *[flag.format(**values) for flag in flags]]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("quantgpt: error: ")
    assert message.format(**values) in err[0]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["finetune", "--output-dir", "{tmp}/r", "--tokenizer", "{tok}"], "exactly one of --model"),
        (["finetune", "--output-dir", "{tmp}/r", "--model-config", "tiny"], "no tokenizer"),
        (["finetune", "--output-dir", "{tmp}/r", "--model-config", "huge", "--tokenizer", "{tok}"], "--model-config huge"),
        (["finetune", "--output-dir", "{tmp}/r", "--model", "{tmp}/none"], "--model {tmp}/none: no such directory"),
        (["evaluate", "{tmp}/none", "--split", "test"], "{tmp}/none: no such model directory"),
        (["evaluate", "--split", "test"], "needs the model directory"),
    ],
)
def test_other_commands_bad_input(argv, message, tmp_path, shared_data, tokenizer_dir, capsys):
    values = {"tmp": str(tmp_path), "tok": str(tokenizer_dir)}
    data = ["--data-dir", str(shared_data), "--train-split", "testbed-train", "--eval-split", "testbed-select"]
    if argv[0] == "evaluate":
        data = data[:2]
    capsys.readouterr()
    assert main([a.format(**values) for a in argv] + data) == 2
    assert message.format(**values) in capsys.readouterr().err


def test_yaml_with_an_unknown_key_is_refused(tmp_path, capsys):
    config_file = tmp_path / "bad.yaml"
    config_file.write_text("teacher: x\nlearning_rat: 0.1\n")
    assert main(["quantize", "--config", str(config_file)]) == 2
    assert "unknown keys ['learning_rat']" in capsys.readouterr().err


def test_training_config_validates_each_field():
    with pytest.raises(ValueError, match=r"TrainingConfig.batch_size=0: allowed is an integer >= 1"):
        TrainingConfig("run", batch_size=0)
    with pytest.raises(ValueError, match=r"TrainingConfig.mixed_precision='fp8'"):
        TrainingConfig("run", mixed_precision="fp8")
    with pytest.raises(ValueError, match=r"TrainingConfig.max_steps=-1"):
        TrainingConfig("run", max_steps=-1)
    with pytest.raises(ValueError, match=r"does not split over 3 processes x 2 accumulation steps"):
        TrainingConfig("run", batch_size=8, gradient_accumulation_steps=2).micro_batch_size(3)
    assert TrainingConfig("run", batch_size=8, gradient_accumulation_steps=2).micro_batch_size(2) == 2


def parsed(tmp_path, command: str, yaml_text: str, argv: list[str]):
    config_file = tmp_path / "flags.yaml"
    config_file.write_text(yaml_text)
    _, subparsers = build_parser()
    _apply_yaml_defaults(subparsers[command], str(config_file))
    return subparsers[command].parse_args(argv)


def test_yaml_keys_are_field_names_and_old_flag_spellings_still_work(tmp_path, capsys):
    new = parsed(tmp_path, "quantize", "learning_rate: 2.0e-4\nnum_epochs: 3\nlayer: 1\nmax_train_examples: 4\n", ["--teacher", "t", "--output-dir", "o"])
    old = parsed(tmp_path, "quantize", "lr: 2.0e-4\nepochs: 3\ncontrastive_layer: 1\nmax_train_blocks: 4\n", ["--teacher", "t", "--output-dir", "o"])
    for args in (new, old):
        training = training_config_from_args(args)
        assert (training.learning_rate, training.num_epochs, args.layer, args.max_train_examples) == (2e-4, 3, 1, 4)
    config_file = tmp_path / "both.yaml"
    config_file.write_text("teacher: x\nlr: 0.1\nlearning_rate: 0.2\n")
    assert main(["quantize", "--config", str(config_file)]) == 2
    assert "learning_rate" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("yaml_text", "argv", "error"),
    [
        ("method: pact\nlam: 0.2\n", [], "--lam 0.2 sets the contrastive loss, which --method pact trains without"),
        ("method: lsq\n", ["--tau", "0.2", "--num-negatives", "8"],
         "--tau 0.2 and --num-negatives 8 set the contrastive loss, which --method lsq trains without: "
         "add --contrastive or drop --tau and --num-negatives"),
        ("method: quantgpt\nlam: 0\n", [], None),  # logit distillation alone: no error
        ("method: pact\nlam: 0\n", [], None),
        ("method: pact\n", ["--contrastive", "--lam", "0.2"], None),
        ("method: quantgpt\n", ["--tau", "0.2"], None),
    ],
)
def test_a_contrastive_setting_without_the_contrastive_loss_is_an_error(tmp_path, yaml_text, argv, error):
    from quantgpt.commands.quantize import objective_from_args
    from quantgpt.errors import UsageError

    args = parsed(tmp_path, "quantize", yaml_text, ["--teacher", "t", "--output-dir", "o", *argv])
    if error is not None:
        with pytest.raises(UsageError, match="^" + error.replace("(", r"\(")):
            objective_from_args(args, args.method)
        return
    objective = objective_from_args(args, args.method)
    if "lam: 0" in yaml_text:
        assert objective.contrastive is None
    else:
        assert objective.contrastive is not None and objective.contrastive.lam in (0.1, 0.2)
