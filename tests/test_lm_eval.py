"""lm-evaluation-harness on a quantized model, offline: its WikiText-2 word perplexity is quantgpt's."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import pytest
from transformers import GPT2Config, GPT2LMHeadModel

from quantgpt import QuantConfig, quantize_model
from quantgpt.cli import main

pytest.importorskip("lm_eval", reason="the eval extra: pip install -e '.[eval]'")

TASKS_DIR = Path(__file__).resolve().parents[1] / "configs" / "lm-eval"
TASK = "quantgpt_wikitext2"
# Two of the shortest articles of WikiText-2 test (566 and 606 GPT-2 tokens): each fits one window
# of the model's 1024 positions, so lm-eval's rolling windows and quantgpt's blocks are the same.
DOCUMENTS = [14, 55]


def _articles(shared_data) -> list[str]:
    spec = importlib.util.spec_from_file_location("wikitext2_local", TASKS_DIR / "wikitext2_local.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.split_articles((shared_data / "wikitext-2-raw" / "wiki.test.raw").read_text(encoding="utf-8"))


def test_the_articles_are_the_whole_test_split(shared_data):
    articles = _articles(shared_data)
    assert len(articles) == 60  # WikiText-2 test: 60 articles
    assert "".join(articles) == (shared_data / "wikitext-2-raw" / "wiki.test.raw").read_text(encoding="utf-8")
    assert articles[14].startswith(" = New York State Route 31B = \n")


@pytest.mark.slow
def test_lm_eval_word_perplexity_equals_quantgpt_evaluate(tmp_path, shared_data, gpt2_tokenizer, monkeypatch, capsys):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from quantgpt.harness import lm_eval_tasks

    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=len(gpt2_tokenizer), n_positions=1024))
    quantize_model(model, QuantConfig(method="quantgpt", bits="4-4-8"))
    model_dir = tmp_path / "best"
    model.save_pretrained(model_dir)
    gpt2_tokenizer.save_pretrained(model_dir)

    results = lm_eval_tasks(model_dir, [TASK], include_path=TASKS_DIR, samples={TASK: DOCUMENTS})
    harness = results["results"][TASK]["word_perplexity,none"]

    # quantgpt evaluate on each article, in one block that starts with lm-eval's prefix token.
    articles = _articles(shared_data)
    nll, words = 0.0, 0
    for index in DOCUMENTS:
        article = tmp_path / f"article-{index}.txt"
        article.write_text(gpt2_tokenizer.bos_token + articles[index], encoding="utf-8")
        capsys.readouterr()
        code = main([
            "evaluate", str(model_dir), "--task", "lm", "--dataset", "text", "--test-file", str(article),
            "--block-size", "1024", "--json",
        ])
        assert code == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert result["tokens"] == len(gpt2_tokenizer(articles[index])["input_ids"])  # every token scored once
        nll += result["loss"] * result["tokens"]
        words += len(re.split(r"\s+", articles[index]))
    ours = math.exp(nll / words)
    assert harness == pytest.approx(ours, rel=5e-3), f"word perplexity: lm-eval {harness}, quantgpt evaluate {ours}"

    capsys.readouterr()
    assert main(["evaluate", str(model_dir), "--lm-eval", TASK, "--lm-eval-limit", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["lm_eval"][TASK]["sample_len"] == 1
    assert math.isfinite(result["lm_eval"][TASK]["word_perplexity,none"])
