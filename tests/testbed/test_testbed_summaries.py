"""The testbed on XSum, on the tiny recipe: the BART pretrained by denoising, fine-tuned on
testbed-train, every row scored by ROUGE-1/2/L (higher is better) on testbed-test."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
from transformers import BartForConditionalGeneration

from quantgpt import api
from quantgpt.config import QuantConfig
from quantgpt.tasks.summarization import load_xsum
from quantgpt.testbed.job import TestbedJob
from quantgpt.testbed.recipe import TINY_BART, TINY_TEACHER
from quantgpt.testbed.summaries import SUMMARY_TEST_SPLIT, get_summary_teacher, summary_task

TABLE3 = Path(__file__).resolve().parents[2] / "benchmarks" / "table3.py"


def table3(argv: list[str]) -> int:
    """benchmarks/table3.py's main (benchmarks/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("table3", TABLE3)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


@pytest.fixture(scope="module")
def summary_job(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("xsum")
    out, cache = root / "results", root / "cache"
    status = table3(["--recipe", "tiny", "--bits", "2-2-8", "--methods", "rtn-untrained", "quantgpt", "laq", "--seeds", "2",
                     "--out", str(out), "--runs", str(root / "runs"), "--cache", str(cache), "--data-dir", str(shared_data),
                     "--no-progress", "--threads", "1"])
    assert status == 0
    return out, cache


def test_the_testbed_splits_cut_the_thousand_pairs_850_50_100(shared_data):
    splits = {name: load_xsum(name, shared_data) for name in ("testbed-train", "testbed-select", "testbed-test")}
    assert [len(s) for s in splits.values()] == [850, 50, 100]
    everything = load_xsum("test-1000", shared_data)
    assert splits["testbed-test"][0]["id"] == everything[900]["id"]
    assert len({i for s in splits.values() for i in s["id"]}) == 1000


def test_table3_scores_rouge_on_testbed_test(summary_job):
    out, _ = summary_job
    data = json.loads((out / "table3.json").read_text())
    assert [row["method"] for row in data["rows"]] == ["full precision", "rtn-untrained", "quantgpt", "laq"]
    for row in data["rows"]:
        assert set(row["scores"]) == {"rouge1", "rouge2", "rougeL"}
        assert all(0 <= value <= 100 for value in row["scores"].values())
    assert [r["seed"] for r in data["runs"] if r["method"] == "quantgpt"] == [0, 1]
    text = (out / "table3.md").read_text()
    assert "ROUGE-2 F1" in text and "mean test ROUGE F1 is higher" in text and "QuantGPT is better than LAQ (Table 1): ROUGE-1 " in text


def test_the_untrained_row_is_the_prepared_teacher_on_testbed_test(summary_job, shared_data):
    out, cache = summary_job
    teacher = get_summary_teacher(TINY_BART, cache, shared_data, progress=False, log=lambda _: None)
    assert teacher.cached and [stage["name"] for stage in teacher.summary["stages"]] == ["pretrain", "finetune"]
    student = api.prepare(BartForConditionalGeneration.from_pretrained(str(teacher.model_dir)), QuantConfig(method="rtn", bits="2-2-8"))
    expected = api.evaluate(student, summary_task(teacher.tokenizer_dir, TINY_BART, shared_data), SUMMARY_TEST_SPLIT)
    row = next(r for r in json.loads((out / "table3.json").read_text())["rows"] if r["method"] == "rtn-untrained")
    assert all(math.isclose(row["scores"][name], expected[name]) for name in ("rouge1", "rouge2", "rougeL"))


def test_xsum_takes_a_bart_recipe():
    with pytest.raises(ValueError, match="task 'xsum' takes a BartRecipe, not a TeacherRecipe"):
        TestbedJob(task="xsum", teacher=TINY_TEACHER)


def test_table3_refuses_a_bad_value_in_one_line(tmp_path, capsys, shared_data):
    out = tmp_path / "results"
    status = table3(["--recipe", "tiny", "--seeds", "0", "--out", str(out), "--cache", str(tmp_path / "cache"),
                     "--data-dir", str(shared_data), "--no-progress"])
    assert status == 2
    assert capsys.readouterr().err.splitlines() == ["quantgpt: error: TestbedJob.seeds=0: allowed is an integer >= 1"]
    assert not out.exists() and not (tmp_path / "cache").exists()
