"""When one row of a table is better than another: over seeds, the gap of the means must exceed
twice the standard error of the difference, sqrt(sd_a^2 / n_a + sd_b^2 / n_b).

Two standard errors is about a 95% interval for a normal difference; with three seeds a row it is
a rough guide, not a test (a t interval would be wider), and the tables say so. A row measured once
without randomness (no training) has sd 0; rows of one seed each cannot be compared at all.
Written by hand: the rule is three lines, and scipy's tests answer a different question.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

BETTER, WORSE, UNCLEAR = "better", "worse", "cannot tell"


@dataclass(frozen=True)
class Spread:
    """The mean and sample standard deviation of `n` values (sd 0 for one value, which
    `deterministic` says is exact rather than unknown)."""

    mean: float
    sd: float
    n: int
    deterministic: bool = False

    @classmethod
    def of(cls, values: Sequence[float], deterministic: bool = False) -> "Spread":
        values = [float(v) for v in values]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), sd, len(values), deterministic)

    @property
    def standard_error(self) -> float | None:
        """sd / sqrt(n); None when one random value leaves it unknown."""
        if self.deterministic:
            return 0.0
        return self.sd / math.sqrt(self.n) if self.n > 1 else None


@dataclass(frozen=True)
class Comparison:
    """a - b, twice its standard error, and the verdict for a."""

    difference: float
    two_se: float | None
    verdict: str


def compare(a: Spread, b: Spread, higher_is_better: bool = False) -> Comparison:
    """Whether `a` is better than `b` (lower, as perplexity; higher with `higher_is_better`, as
    hits@1), worse, or neither by more than two standard errors."""
    difference = a.mean - b.mean
    se_a, se_b = a.standard_error, b.standard_error
    if se_a is None or se_b is None:
        return Comparison(difference, None, UNCLEAR)
    two_se = 2 * math.hypot(se_a, se_b)
    gain = difference if higher_is_better else -difference
    if gain > two_se:
        return Comparison(difference, two_se, BETTER)
    if gain < -two_se:
        return Comparison(difference, two_se, WORSE)
    return Comparison(difference, two_se, UNCLEAR)


_MARKS = {BETTER: "<", WORSE: ">", UNCLEAR: "~"}


def comparison_matrix_markdown(spreads: Mapping[str, Spread], higher_is_better: bool = False) -> str:
    """A Markdown matrix over the named rows: "<" where the row is better than the column by more
    than two standard errors (`compare`), ">" where worse, "~" where the gap is within them."""
    names = list(spreads)
    lines = ["| | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for row in names:
        cells = ["" if row == column else _MARKS[compare(spreads[row], spreads[column], higher_is_better).verdict] for column in names]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
