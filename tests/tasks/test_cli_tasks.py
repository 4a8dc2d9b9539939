"""`quantgpt finetune / quantize / evaluate --task personachat | xsum` end to end on tiny random models
with real data, and the paper's configs for Tables 1 and 3."""

import json
import math
from pathlib import Path

import pytest

from quantgpt import settings
from quantgpt.cli import _apply_yaml_defaults, build_parser, main
from quantgpt.config import QuantConfig
from quantgpt.tasks.personachat_task import PersonaChatTask
from quantgpt.tasks.summarization_task import SummarizationTask
from quantgpt.training.task import task_class

PAPER_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "paper"


def run_cli(capsys, *argv: str) -> str:
    """Runs `quantgpt ARGV` in this process; returns its standard output (fails on a non-zero status)."""
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    assert status == 0, captured.err[-2000:]
    return captured.out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_registered_task_names():
    assert task_class("personachat") is PersonaChatTask
    assert task_class("xsum") is SummarizationTask


def test_personachat_finetune_quantize_evaluate(tmp_path, shared_data, capsys):
    data = ["--task", "personachat", "--data-dir", shared_data, "--max-length", "128", "--eval-batch-size", "5"]
    training = ["--train-split", "valid", "--max-train-examples", "8", "--batch-size", "4", "--max-steps", "2"]
    training += ["--eval-split", "parlai-valid", "--no-progress"]
    out = run_cli(
        capsys, "finetune", "--model-config", "tiny", "--tokenizer", shared_data / "gpt2-tokenizer",
        *data, *training, "--output-dir", tmp_path / "teacher",
    )
    assert "teacher: 2 steps; best accuracy" in out
    out = run_cli(
        capsys, "quantize", "--teacher", tmp_path / "teacher/best", "--method", "quantgpt", "--bits", "2-2-8",
        *data, *training, "--output-dir", tmp_path / "q228",
    )
    assert "q228: 2 steps; best accuracy" in out

    (train_record,) = [r for r in read_jsonl(tmp_path / "q228/metrics.jsonl") if r["kind"] == "train"]
    # L = L_logit + 0.1 L_cont (Eq. 5); L_logit sums the LM and the multiple-choice soft cross-entropies.
    assert train_record["loss"] == pytest.approx(train_record["logit_loss"] + 0.1 * train_record["contrastive_loss"], rel=1e-4)
    config = json.loads((tmp_path / "q228/best/config.json").read_text())
    assert config["architectures"] == ["GPT2DoubleHeadsModel"]
    assert config["quantization_config"]["bits"] == "2-2-8"
    assert config["vocab_size"] == 50262  # GPT-2's 50,257 + the five Persona-Chat tokens

    out = run_cli(capsys, "evaluate", tmp_path / "q228/best", "--split", "parlai-valid", "--json", *data)
    result = json.loads(out)
    assert result["task"] == "personachat" and result["examples"] == 5
    assert result["accuracy"] in {0.0, 20.0, 40.0, 60.0, 80.0, 100.0}  # 5 examples
    final = json.loads((tmp_path / "q228/final_metrics.json").read_text())
    assert result["accuracy"] == final["best"]["accuracy"]  # the saved best model scores as it did in training


def test_xsum_finetune_quantize_evaluate(tmp_path, shared_data, capsys):
    data = ["--task", "xsum", "--data-dir", shared_data, "--max-source-length", "128", "--max-new-tokens", "12"]
    data += ["--max-eval-examples", "3"]
    training = ["--train-split", "sample", "--max-train-examples", "8", "--batch-size", "4", "--max-steps", "2"]
    training += ["--eval-split", "sample", "--no-progress"]
    out = run_cli(
        capsys, "finetune", "--model-config", "tiny-bart", "--tokenizer", shared_data / "gpt2-tokenizer",
        *data, *training, "--output-dir", tmp_path / "teacher",
    )
    assert "teacher: 2 steps; best rouge2" in out
    run_cli(
        capsys, "quantize", "--teacher", tmp_path / "teacher/best", "--method", "quantgpt", "--bits", "2-2-8",
        *data, *training, "--output-dir", tmp_path / "q228",
    )
    (train_record,) = [r for r in read_jsonl(tmp_path / "q228/metrics.jsonl") if r["kind"] == "train"]
    assert train_record["loss"] == pytest.approx(train_record["logit_loss"] + 0.1 * train_record["contrastive_loss"], rel=1e-4)
    config = json.loads((tmp_path / "q228/best/config.json").read_text())
    assert config["architectures"] == ["BartForConditionalGeneration"]
    assert config["quantization_config"]["bits"] == "2-2-8"

    result = json.loads(run_cli(capsys, "evaluate", tmp_path / "q228/best", "--split", "sample", "--json", *data))
    assert result["task"] == "xsum" and result["examples"] == 3
    assert all(0.0 <= result[key] <= 100.0 for key in ("rouge1", "rouge2", "rougeL"))
    assert result["loss"] == pytest.approx(math.log(50265), abs=0.5)  # a barely trained model: near uniform

    # Table 6's encoder ablation: the contrastive loss on the encoder's first layer over the articles.
    run_cli(
        capsys, "quantize", "--teacher", tmp_path / "teacher/best", "--bits", "2-2-8", "--contrastive-states", "encoder",
        "--contrastive-layer", "1", *data, *training, "--max-steps", "1", "--output-dir", tmp_path / "encoder-first",
    )
    record = json.loads((tmp_path / "encoder-first/run_config.json").read_text())
    assert record["task"]["contrastive_states"] == "encoder" and record["objective"]["contrastive"]["layer"] == 1
    assert any("contrastive_loss" in r for r in read_jsonl(tmp_path / "encoder-first/metrics.jsonl"))


def parse_config(path: Path):
    command = "finetune" if path.stem.endswith("teacher") else "quantize"
    parser, subparsers = build_parser()
    _apply_yaml_defaults(subparsers[command], str(path))
    return command, parser.parse_args([command])


@pytest.mark.parametrize(
    ("task", "model", "lr", "batch", "epochs"),
    [("personachat", "gpt2", 5e-4, 16, 2), ("xsum", "facebook/bart-base", 2e-4, 128, 8)],
)
def test_paper_configs_of_tables_1_and_3(task, model, lr, batch, epochs):
    from quantgpt.commands.finetune import training_config_from_args
    from quantgpt.commands.quantize import objective_from_args

    paths = sorted(PAPER_CONFIGS.glob(f"{task}-*.yaml"))
    rows = {path.stem.removeprefix(f"{task}-") for path in paths}
    assert rows == {"teacher"} | {f"{m}-{b}" for m in ("quantgpt", "pact", "lsq", "laq") for b in ("8-8-8", "4-4-8", "2-2-8")}
    for path in paths:
        command, args = parse_config(path)
        assert args.task == task, path
        training = training_config_from_args(args)
        assert training.batch_size == batch and training.num_epochs == epochs, path
        if command == "finetune":
            assert args.model == model
            continue
        assert training.learning_rate == lr and training.quantizer_learning_rate == 1e-3, path
        assert args.teacher == f"runs/paper/{task}/teacher/best"
        quantization = QuantConfig(method=args.method, bits=args.bits)
        assert path.stem == f"{task}-{quantization.method}-{quantization.bits}"
        objective = objective_from_args(args, args.method)
        if args.method == "quantgpt":
            contrastive = objective.contrastive
            assert (contrastive.num_negatives, contrastive.tau, contrastive.momentum, contrastive.lam) == (32, 0.1, 0.5, 0.1)
            assert contrastive.layer == -1
        else:
            assert objective.contrastive is None  # the baselines distill logits only (Appendix B.4)
        options = settings.from_args(task_class(task).options_class, args)  # a key not in the file: the default
        if task == "xsum":
            assert (options.num_beams, options.length_penalty, options.max_source_length) == (6, 1.0, 512)
            assert options.contrastive_states == "decoder"
        else:
            assert options.max_length == 512
