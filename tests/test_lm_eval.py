"""lm-evaluation-harness on a quantized model, offline: its WikiText-2 word perplexity is quantgpt's."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import pytest
from tiny_models import tiny_model

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
    assert len(articles) == 60  # WikiText-2 test: 60 articles (62 " = ... = " lines, 2 of them formulas)
    assert "".join(articles) == (shared_data / "wikitext-2-raw" / "wiki.test.raw").read_text(encoding="utf-8")
    assert articles[14].startswith(" = New York State Route 31B = \n")


@pytest.mark.slow
def test_lm_eval_word_perplexity_equals_quantgpt_evaluate(tmp_path, shared_data, gpt2_tokenizer, monkeypatch, capsys):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from quantgpt.harness import lm_eval_tasks

    model = tiny_model("tiny", vocab_size=len(gpt2_tokenizer), n_positions=1024)
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
    with capsys.disabled():  # the README's figure: `pytest -s tests/test_lm_eval.py`
        print(f"\nword perplexity: lm-eval {harness:.6f}, quantgpt evaluate {ours:.6f} (relative {abs(harness / ours - 1):.1e})")
    assert harness == pytest.approx(ours, rel=5e-3), f"word perplexity: lm-eval {harness}, quantgpt evaluate {ours}"

    capsys.readouterr()
    assert main(["evaluate", str(model_dir), "--lm-eval", TASK, "--lm-eval-limit", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["lm_eval"][TASK]["sample_len"] == 1
    assert math.isfinite(result["lm_eval"][TASK]["word_perplexity,none"])


def test_quantgpt_lm_eval_without_lm_eval_is_one_line(monkeypatch, capsys):
    import sys

    from quantgpt import harness

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # `import lm_eval` raises ModuleNotFoundError
    with pytest.raises(SystemExit) as stop:
        harness.main(["--tasks", TASK])
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        "quantgpt: error: lm-evaluation-harness is not installed: pip install 'quantgpt[eval]' (or lm-eval)\n"
    )


def test_lm_eval_scores_quantgpt_s_own_tokenizer(tmp_path, monkeypatch):
    """lm-eval gets the tokenizer training used (tokenizer.json as saved), not AutoTokenizer's."""
    import lm_eval
    import lm_eval.models.huggingface
    from decoder_models import tiny_llama
    from test_tokenization import _non_gpt2_tokenizer
    from tokenizers import pre_tokenizers

    from quantgpt.harness import lm_eval_tasks

    backend, tokenizer = _non_gpt2_tokenizer(pre_tokenizers.Metaspace())
    tiny_llama(vocab=300).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    seen = {}

    def fake_hflm(pretrained, tokenizer=None, **kwargs):
        seen.update(pretrained=pretrained, tokenizer=tokenizer, **kwargs)
        return "lm"

    monkeypatch.setattr(lm_eval.models.huggingface, "HFLM", fake_hflm)
    monkeypatch.setattr(lm_eval, "simple_evaluate", lambda model, **kwargs: {"model": model, "results": {}})
    assert lm_eval_tasks(tmp_path, [TASK], include_path=TASKS_DIR, max_length=64)["model"] == "lm"
    assert (seen["pretrained"], seen["dtype"], seen["max_length"]) == (str(tmp_path), "float32", 64)
    text = "The tower is 3240 metres tall."
    assert seen["tokenizer"](text)["input_ids"] == backend.encode(text).ids
