"""The testbed on Persona-Chat, on the tiny recipe: the double-head teacher fine-tuned from the
pretrained checkpoint, the rows scored by hits@1 (higher is better) on the same test examples."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from transformers import GPT2DoubleHeadsModel

from quantgpt import api
from quantgpt.cli import main
from quantgpt.config import QuantConfig
from quantgpt.testbed.dialogue import dialogue_task, get_dialogue_teacher
from quantgpt.testbed.job import TestbedJob
from quantgpt.testbed.tasks import TESTBED_TASKS
from quantgpt.testbed.recipe import SCRATCH_TEACHER, TINY_TEACHER

BLOCK = 128  # the tiny recipe's 32 positions cannot hold a persona, an utterance and a reply


@pytest.fixture(scope="module")
def dialogue_job(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("dialogue")
    out, cache = root / "results", root / "cache"
    status = main(["run", "--recipe", "tiny", "--task", "personachat", "--block-size", str(BLOCK), "--methods", "rtn-untrained",
                   "quantgpt", "laq", "--seeds", "2", "--out", str(out), "--cache", str(cache), "--data-dir", str(shared_data),
                   "--no-progress", "--threads", "1"])
    assert status == 0
    return out, cache


def test_table_scores_hits_at_1_on_persona_chat_test(dialogue_job):
    out, _ = dialogue_job
    data = json.loads((out / "table1.json").read_text())
    assert [row["method"] for row in data["rows"]] == ["full precision", "rtn-untrained", "quantgpt", "laq"]
    for row in data["rows"]:
        assert set(row["scores"]) == {"personachat"} and 0 <= row["scores"]["personachat"] <= 100
    quantgpt = [r for r in data["runs"] if r["method"] == "quantgpt"]
    assert [r["seed"] for r in quantgpt] == [0, 1]
    text = (out / "table1.md").read_text()
    assert "Persona-Chat hits@1 (%)" in text and "mean test hits@1 is higher" in text
    assert "QuantGPT is better than LAQ (Table 1): Persona-Chat " in text
    assert not (out / "figures").exists()  # the figures are language modelling's


def test_the_teacher_is_the_double_head_model_fine_tuned_from_the_pretrained_checkpoint(dialogue_job, shared_data):
    out, cache = dialogue_job
    recipe = dataclasses.replace(TINY_TEACHER, block_size=BLOCK)
    teacher = get_dialogue_teacher(recipe, cache, shared_data, progress=False, log=lambda _: None)
    assert teacher.cached and [stage["name"] for stage in teacher.summary["stages"]] == ["pretrain", "finetune"]
    model = GPT2DoubleHeadsModel.from_pretrained(str(teacher.model_dir))
    task = dialogue_task(teacher.tokenizer_dir, recipe, shared_data)
    assert model.config.vocab_size == len(task.tokenizer)  # the 5 special tokens were added
    student = api.prepare(model, QuantConfig(method="rtn", bits="2-2-8"))
    expected = api.evaluate(student, task, TESTBED_TASKS["personachat"].test_split)["accuracy"]
    row = next(r for r in json.loads((out / "table1.json").read_text())["rows"] if r["method"] == "rtn-untrained")
    assert math.isclose(row["scores"]["personachat"], expected)


def test_persona_chat_needs_a_pretrained_checkpoint_and_its_own_test_set(tmp_path):
    with pytest.raises(ValueError, match="pretrains"):
        get_dialogue_teacher(SCRATCH_TEACHER, tmp_path)
    with pytest.raises(ValueError, match="'ptb' is not a test set of task 'personachat'"):
        TestbedJob(task="personachat", test_sets=("ptb",))
    assert TestbedJob(task="personachat").test_sets == ("personachat",)
