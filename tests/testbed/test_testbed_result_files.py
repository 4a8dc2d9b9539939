"""A run's `testbed_result.json` is checked when read back: a damaged one is a run to redo, said in
one line, never a traceback and never a number that goes into the table unchecked."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantgpt.testbed.job import RESULT_FILE, MethodResult, _reused, _save_result

SETTINGS = {"task": "lm", "variant": "quantgpt", "bits": "2-2-8", "teacher": "k", "qat": {"seed": 0}, "format": 2}
RESULT = MethodResult("quantgpt", "2-2-8", None, 41.5, {"wikitext-2": 52.25, "ptb": 80.0}, 12.0, 900.0, 0.5, seed=0)


def saved(tmp_path) -> dict:
    _save_result(tmp_path, SETTINGS, RESULT)
    return json.loads((tmp_path / RESULT_FILE).read_text())


def reread(tmp_path) -> tuple[MethodResult | None, list[str]]:
    lines: list[str] = []
    return _reused(tmp_path, SETTINGS, lines.append), lines


def test_a_finished_result_is_read_back(tmp_path):
    saved(tmp_path)
    result, lines = reread(tmp_path)
    assert result == MethodResult(**{**vars(RESULT), "run_dir": tmp_path}) and lines == []


def test_a_diverged_score_written_null_comes_back_as_nan(tmp_path):
    data = saved(tmp_path)
    data["result"]["scores"]["ptb"] = None
    (tmp_path / RESULT_FILE).write_text(json.dumps(data))
    result, lines = reread(tmp_path)
    assert math.isnan(result.scores["ptb"]) and result.scores["wikitext-2"] == 52.25 and lines == []


def test_other_settings_are_a_rerun_without_a_word(tmp_path):
    data = saved(tmp_path)
    data["settings"]["qat"] = {"seed": 1}
    (tmp_path / RESULT_FILE).write_text(json.dumps(data))
    assert reread(tmp_path) == (None, [])


DAMAGED = {
    "truncated": lambda d: json.dumps(d)[:40],
    "empty": lambda d: "",
    "a list": lambda d: "[1, 2]",
    "result a list": lambda d: json.dumps({**d, "result": [1, 2]}),
    "settings a string": lambda d: json.dumps({**d, "settings": "x"}),
    "a score a string": lambda d: json.dumps({**d, "result": {**d["result"], "scores": {"wikitext-2": "52"}}}),
    "a negative perplexity": lambda d: json.dumps({**d, "result": {**d["result"], "scores": {"wikitext-2": -3.0}}}),
    "select_score true": lambda d: json.dumps({**d, "result": {**d["result"], "select_score": True}}),
    "a field missing": lambda d: json.dumps({**d, "result": {k: v for k, v in d["result"].items() if k != "seed"}}),
    "a field more": lambda d: json.dumps({**d, "result": {**d["result"], "run_dir": "/elsewhere"}}),
    "another run's result": lambda d: json.dumps({**d, "result": {**d["result"], "method": "pact"}}),
    "Infinity": lambda d: json.dumps(d).replace("41.5", "Infinity"),
}


@pytest.mark.parametrize("damage", DAMAGED)
def test_a_damaged_result_is_a_run_to_redo_said_in_one_line(tmp_path, damage):
    (tmp_path / RESULT_FILE).write_text(DAMAGED[damage](saved(tmp_path)))
    result, lines = reread(tmp_path)
    assert result is None
    assert len(lines) == 1 and "\n" not in lines[0] and lines[0].startswith(f"{tmp_path / RESULT_FILE}:"), lines
    assert lines[0].endswith("; running it again")


def test_a_folder_named_like_the_result_is_a_run_to_redo(tmp_path):
    (tmp_path / RESULT_FILE).mkdir()
    result, lines = reread(tmp_path)
    assert result is None and len(lines) == 1 and "not a file" in lines[0]


scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**20), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=6))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from([*vars(RESULT), "other"]), json_values, min_size=1, max_size=3))
def test_any_result_fields_are_read_back_checked_or_redone(tmp_path, changes):
    """Whatever a result's fields hold, reading it back gives a result whose scores the table can
    format, or a rerun said in one line; never an exception."""
    data = saved(tmp_path)
    data["result"].update(changes)
    (tmp_path / RESULT_FILE).write_text(json.dumps(data, allow_nan=True))
    result, lines = reread(tmp_path)
    if result is None:
        assert len(lines) == 1 and lines[0].endswith("; running it again")
        return
    assert lines == []
    for value in (result.select_score, *result.scores.values()):
        assert isinstance(value, float | int) and not isinstance(value, bool) and (math.isnan(value) or value >= 0)
        f"{value:.2f}"  # what the log line and the table do with it
    assert isinstance(result.wall_seconds, float | int) and result.wall_seconds >= 0
