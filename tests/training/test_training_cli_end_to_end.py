"""From the command line: a tiny teacher fine-tuned on WikiText-2, quantized at 2-2-8 by every method, evaluated."""

from __future__ import annotations

import json
import math

import pytest

from quantgpt import load_quantized
from quantgpt.cli import main
from quantgpt.training.metrics import read_metrics

from training_helpers import lm_flags

METHODS = ("quantgpt", "pact", "lsq", "laq")


def _evaluate_json(capsys, model_dir, shared_data, split: str = "testbed-select") -> dict:
    capsys.readouterr()
    flags = ["--task", "lm", "--dataset", "wikitext-2", "--data-dir", str(shared_data), "--block-size", "32", "--max-eval-blocks", "4"]
    assert main(["evaluate", str(model_dir), *flags, "--split", split, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow
def test_finetune_then_quantize_each_method_then_evaluate(tmp_path, shared_data, tokenizer_dir, capsys):
    teacher_run = tmp_path / "teacher"
    code = main([
        "finetune", "--model-config", "tiny", "--tokenizer", str(tokenizer_dir), *lm_flags(shared_data),
        "--batch-size", "4", "--max-steps", "4", "--lr", "1e-3", "--eval-every", "2", "--save-every", "2",
        "--log-every", "1", "--test-split", "test", "--output-dir", str(teacher_run),
    ])
    assert code == 0
    teacher_records = read_metrics(teacher_run)
    train_losses = [r["loss"] for r in teacher_records if r["kind"] == "train"]
    assert len(train_losses) == 4
    # The random tiny model starts near ln(50257) = 10.82 nats a token and learns.
    assert abs(train_losses[0] - math.log(50257)) < 0.2
    assert train_losses[-1] < train_losses[0]
    teacher_ppl = _evaluate_json(capsys, teacher_run / "best", shared_data)["perplexity"]
    best = json.loads((teacher_run / "final_metrics.json").read_text())["best"]
    assert teacher_ppl == pytest.approx(best["perplexity"], rel=1e-9)  # the saved best reloads to the same metric
    test = json.loads((teacher_run / "final_metrics.json").read_text())["test"]
    assert test["split"] == "test" and test["tokens"] == 4 * 32 - 4  # 4 blocks, each block's first token unscored
    assert test["perplexity"] == pytest.approx(_evaluate_json(capsys, teacher_run / "best", shared_data, "test")["perplexity"], rel=1e-9)

    for method in METHODS:
        run = tmp_path / method
        code = main([
            "quantize", "--teacher", str(teacher_run / "best"), "--method", method, "--bits", "2-2-8",
            *lm_flags(shared_data), "--batch-size", "4", "--max-steps", "2", "--eval-every", "2",
            # a contrastive setting is for the method with the contrastive loss (an error with the others)
            *(["--num-negatives", "8"] if method == "quantgpt" else []), "--output-dir", str(run),
        ])
        assert code == 0, method
        records = read_metrics(run)
        last_train = [r for r in records if r["kind"] == "train"][-1]
        assert ("contrastive_loss" in last_train) == (method == "quantgpt")
        assert last_train["lr_quantizers" if method != "laq" else "lr"] > 0
        result = _evaluate_json(capsys, run / "best", shared_data)
        assert math.isfinite(result["perplexity"]) and result["perplexity"] > 1
        final = json.loads((run / "final_metrics.json").read_text())
        assert result["perplexity"] == pytest.approx(final["best"]["perplexity"], rel=1e-9)
        model = load_quantized(run / "best")
        assert model.quantization_config.method == method
        assert str(model.quantization_config.bits) == "2-2-8"
        assert (run / "best" / "tokenizer.json").is_file()
        run_config = json.loads((run / "run_config.json").read_text())
        assert run_config["quantization"]["method"] == method
        assert (run_config["objective"]["contrastive"] is not None) == (method == "quantgpt")
