"""Which of the testbed's rows beats which, over QAT seeds, and what that says of the paper's claims.

A row is better than another only when its mean test score is better (perplexity lower, hits@1
and ROUGE higher) by more than twice the standard error of the difference (`quantgpt.report.significance`); the paper's orderings at 2-2-8
(`CLAIMS`) are each confirmed, contradicted, or left undecided by that rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..report.significance import BETTER, UNCLEAR, WORSE, Spread, compare, comparison_matrix_markdown
from ..report.table import DATASET_NAMES
from .variants import variant

# The paper's orderings at 2-2-8 (its Table 1 for GPT-2 on WikiText-2 and PTB, and Table 7):
# (the better row, the worse row, the claim).
CLAIMS = (
    ("quantgpt", "laq", "QuantGPT is better than LAQ (Table 1)"),
    ("laq", "lsq", "LAQ is better than LSQ (Table 1)"),
    ("laq", "pact", "LAQ is better than PACT (Table 1)"),
    ("quantgpt", "quantgpt-logit", "the contrastive loss helps QuantGPT (Table 7)"),
    ("quantgpt-logit", "quantgpt-pact-gradient", "Eq. 7's gradient is better than PACT's for the scaling (Table 7)"),
)
CLAIM_BITS = "2-2-8"
_VERDICTS = {BETTER: "confirmed", WORSE: "contradicted", UNCLEAR: "cannot tell"}


def grouped(results: Sequence[Any]) -> dict[tuple[str, str], list[Any]]:
    """The results (`MethodResult`s) of each (variant, bits), seeds together, in the order they ran."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for result in results:
        groups.setdefault((result.method, result.bits), []).append(result)
    return groups


def spreads(results: Sequence[Any], bits: str, test: str) -> dict[str, Spread]:
    """Each variant's score on `test` at `bits` over its seeds (exact for an untrained one)."""
    return {
        name: Spread.of([r.scores[test] for r in group], deterministic=not variant(name).trained)
        for (name, group_bits), group in grouped(results).items()
        if group_bits == bits
    }


def claim_verdicts(results: Sequence[Any], test_sets: Sequence[str], higher_is_better: bool = False) -> list[dict[str, Any]]:
    """Each claim whose two rows ran at 2-2-8: on each test set, "confirmed" (the first row is better
    by more than 2 SE), "contradicted" (worse by more) or "cannot tell", with the difference of the
    means and its 2 SE (None when a row has one seed)."""
    verdicts = []
    by_test_set = {test: spreads(results, CLAIM_BITS, test) for test in test_sets}
    for better, worse, claim in CLAIMS:
        if not all(better in rows and worse in rows for rows in by_test_set.values()):
            continue
        tests = {}
        for test, rows in by_test_set.items():
            outcome = compare(rows[better], rows[worse], higher_is_better)
            tests[test] = {"verdict": _VERDICTS[outcome.verdict], "difference": outcome.difference, "two_se": outcome.two_se}
        verdicts.append({"claim": claim, "better": better, "worse": worse, "tests": tests})
    return verdicts


def _claim_line(item: dict[str, Any]) -> str:
    parts = []
    for test, v in item["tests"].items():
        gap = f"{v['difference']:+.2f}" + (f" vs 2 SE {v['two_se']:.2f}" if v["two_se"] is not None else ", one seed")
        parts.append(f"{DATASET_NAMES.get(test, test)} {v['verdict']} ({gap})")
    return f"- {item['claim']}: " + "; ".join(parts) + "."


def comparisons_markdown(
    results: Sequence[Any], bits: Sequence[str], test_sets: Sequence[str], seeds: int, verdicts: list[dict[str, Any]],
    higher_is_better: bool = False, score_name: str = "perplexity",
) -> str:
    """The table's closing sections: a which-beats-which matrix per bit width and test set, then
    the paper's claims. `score_name` names the metric compared ("perplexity", "hits@1", "ROUGE F1")."""
    text = (
        f"\n## Which row beats which\n\nTrained rows over {seeds} QAT seed(s): \"<\" where the row's mean test "
        + f"{score_name} is {'higher' if higher_is_better else 'lower'}"
        + " than the column's by more than twice the standard error of the difference, \">\" where worse by as much, \"~\" "
        "where within (or where one seed leaves the spread unknown). The untrained rows are exact (no randomness). "
        "With 3 seeds a row, 2 SE is a rough guide, not a test.\n"
    )
    for width in bits:
        for test in test_sets:
            text += f"\n{width}, {DATASET_NAMES.get(test, test)} test:\n\n{comparison_matrix_markdown(spreads(results, width, test), higher_is_better)}"
    if verdicts:
        text += f"\n## The paper's claims at {CLAIM_BITS}\n\n" + "\n".join(map(_claim_line, verdicts)) + "\n"
    return text
