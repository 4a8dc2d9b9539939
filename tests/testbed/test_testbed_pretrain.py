"""`quantgpt pretrain` end to end on the tiny recipe: stages, cache, rebuild of an interrupted build."""

from __future__ import annotations

import json

from quantgpt.cli import main
from quantgpt.testbed.recipe import TINY_TEACHER
from quantgpt.testbed.teacher import get_teacher, teacher_folder
from quantgpt.tokenization import load_gpt2_tokenizer


def _pretrain(cache, shared_data, capsys) -> dict:
    assert main(["pretrain", "--recipe", "tiny", "--cache", str(cache), "--data-dir", str(shared_data), "--no-progress", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):])


def test_pretrain_trains_both_stages_then_caches(tmp_path, shared_data, capsys):
    first = _pretrain(tmp_path, shared_data, capsys)
    assert first["cached"] is False
    assert [s["name"] for s in first["stages"]] == ["pretrain", "finetune"]
    assert [s["steps"] for s in first["stages"]] == [TINY_TEACHER.pretrain_steps, TINY_TEACHER.finetune_steps]
    folder = teacher_folder(TINY_TEACHER, tmp_path)
    assert first["teacher"] == str(folder / "finetune" / "best")
    assert len(load_gpt2_tokenizer(folder / "finetune" / "best")) == TINY_TEACHER.vocab_size
    metrics = (folder / "finetune" / "metrics.jsonl").read_text()

    second = _pretrain(tmp_path, shared_data, capsys)
    assert second["cached"] is True
    assert second["select_perplexity"] == first["select_perplexity"]
    assert (folder / "finetune" / "metrics.jsonl").read_text() == metrics  # not trained again


def test_an_interrupted_build_is_rebuilt(tmp_path, shared_data):
    folder = teacher_folder(TINY_TEACHER, tmp_path)
    (folder / "finetune").mkdir(parents=True)
    (folder / "finetune" / "metrics.jsonl").write_text("")  # a run that died before teacher.json
    logged = []
    teacher = get_teacher(TINY_TEACHER, tmp_path, shared_data, progress=False, log=logged.append)
    assert not teacher.cached and (folder / "teacher.json").is_file()
    assert any("interrupted" in line for line in logged)
