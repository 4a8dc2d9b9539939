"""Two standard errors of the difference, by hand: when a row is better, worse, or neither."""

import math

import pytest

from quantgpt.report.significance import BETTER, UNCLEAR, WORSE, Spread, compare, comparison_matrix_markdown
from quantgpt.testbed.comparisons import claim_verdicts
from quantgpt.testbed.job import MethodResult


def test_spread_is_the_mean_and_sample_sd():
    spread = Spread.of([1.0, 2.0, 3.0])
    assert (spread.mean, spread.sd, spread.n) == (2.0, 1.0, 3)
    assert spread.standard_error == pytest.approx(1 / math.sqrt(3))
    assert Spread.of([5.0]).standard_error is None  # one random value: spread unknown
    assert Spread.of([5.0], deterministic=True).standard_error == 0.0


def test_compare_uses_twice_the_standard_error_of_the_difference():
    a, b = Spread.of([10.0, 11.0, 12.0]), Spread.of([13.0, 14.0, 15.0])  # sd 1 each, n 3
    two_se = 2 * math.sqrt(1 / 3 + 1 / 3)  # 1.633
    outcome = compare(a, b)
    assert outcome.difference == -3.0 and outcome.two_se == pytest.approx(two_se) and outcome.verdict == BETTER
    assert compare(b, a).verdict == WORSE
    close = Spread.of([11.5, 12.5, 13.5])  # 1.5 above a: within 1.633
    assert compare(a, close).verdict == UNCLEAR
    assert compare(Spread.of([1.0]), Spread.of([9.0])).verdict == UNCLEAR  # one seed each: cannot tell
    exact = Spread.of([20.0], deterministic=True)
    assert compare(a, exact).verdict == BETTER and compare(a, exact).two_se == pytest.approx(2 / math.sqrt(3))


def test_matrix_marks_each_pair():
    text = comparison_matrix_markdown({"x": Spread.of([1.0, 1.1, 0.9]), "y": Spread.of([5.0, 5.1, 4.9]), "z": Spread.of([1.05, 0.95, 1.0])})
    assert "| x |  | < | ~ |" in text and "| y | > |  | > |" in text


def _result(method, seed, wikitext):
    return MethodResult(method, "2-2-8", None, wikitext, {"wikitext-2": wikitext}, 0.0, 0.0, None, seed)


def test_claims_are_confirmed_contradicted_or_undecided():
    results = [_result("quantgpt", s, v) for s, v in enumerate([10.0, 10.1, 9.9])]
    results += [_result("laq", s, v) for s, v in enumerate([12.0, 12.1, 11.9])]
    results += [_result("lsq", s, v) for s, v in enumerate([11.0, 11.1, 10.9])]
    results += [_result("quantgpt-logit", s, v) for s, v in enumerate([10.0, 11.0, 9.0])]
    verdicts = {v["claim"].split(" (")[0]: v["tests"]["wikitext-2"]["verdict"] for v in claim_verdicts(results, ["wikitext-2"])}
    assert verdicts == {
        "QuantGPT is better than LAQ": "confirmed",
        "LAQ is better than LSQ": "contradicted",
        "the contrastive loss helps QuantGPT": "cannot tell",
    }  # PACT and the gradient ablation did not run: no verdict on their claims


def test_higher_is_better_turns_the_verdicts_around():
    """Hits@1: the higher mean wins, by the same two standard errors."""
    low, high = Spread.of([10.0, 11.0, 12.0]), Spread.of([13.0, 14.0, 15.0])
    assert compare(high, low, higher_is_better=True).verdict == BETTER
    assert compare(low, high, higher_is_better=True).verdict == WORSE
    assert compare(low, Spread.of([11.5, 12.5, 13.5]), higher_is_better=True).verdict == UNCLEAR
    text = comparison_matrix_markdown({"low": low, "high": high}, higher_is_better=True)
    assert "| low |  | > |" in text and "| high | < |  |" in text
    results = [_result("quantgpt", s, v) for s, v in enumerate([30.0, 31.0, 29.0])]
    results += [_result("laq", s, v) for s, v in enumerate([20.0, 21.0, 19.0])]
    (verdict,) = claim_verdicts(results, ["wikitext-2"], higher_is_better=True)
    assert verdict["tests"]["wikitext-2"]["verdict"] == "confirmed"
