"""The paper's Table 1 from measured results: method, bits, size, compression, scores (perplexity,
or hits@1 for Persona-Chat), ratios.

Rows are plain records (`ResultRow`) so that the main job, the benchmark grid and a peer library's
baseline all feed one formatter; the ratio of each score to the full-precision row of the
same table is what the testbed compares (absolute perplexities of the CPU testbed are not the
paper's: see ../shared/data/README.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..jsonio import dumps_json
from ..quantizers import display_name
from ..errors import UsageError

FULL_PRECISION = "full precision"
DATASET_NAMES = {"wikitext-2": "WikiText-2", "ptb": "PTB", "wikitext-103": "WikiText-103", "personachat": "Persona-Chat",
                 "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L"}


@dataclass
class ResultRow:
    """One line of Table 1. `scores` maps a test set ("wikitext-2", "ptb", "personachat") to the
    task's metric on it (perplexity; hits@1 for Persona-Chat);
    `bits` is None for the full-precision model; `extra` holds further measured columns
    (step time ratio, peak memory, wall time), shown when `extra_columns` names them. A row over
    several seeds holds the mean scores, their standard deviations in `sd` and the count in
    `seeds`. `label` names the row when it is not the method's display name (a variant).
    """

    method: str
    bits: str | None
    size_mib: float
    scores: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    sd: dict[str, float] = field(default_factory=dict)
    seeds: int = 1

    @property
    def name(self) -> str:
        return self.label or display_name(self.method)


def _reference(rows: list[ResultRow]) -> ResultRow:
    for row in rows:
        if row.method == FULL_PRECISION:
            return row
    raise UsageError(f"the table needs a {FULL_PRECISION!r} row: ratios are relative to it")


def ratios_to_full_precision(rows: list[ResultRow]) -> list[dict[str, float]]:
    """For each row, its score / the full-precision score on each test set (1.0 is lossless; None
    where the full-precision score is 0, as hits@1 of an untrained model can be)."""
    reference = _reference(rows)
    return [
        {name: value / reference.scores[name] if reference.scores[name] else None
         for name, value in row.scores.items() if name in reference.scores}
        for row in rows
    ]


def _format(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else ("nan" if math.isnan(value) else f"{value:.{digits}f}")
    return str(value)


def table1_markdown(rows: list[ResultRow], extra_columns: dict[str, str] | None = None, metric: str = "PPL") -> str:
    """Table 1 as Markdown: one row per result, in the order given.

    Columns: method, bits (W-E-A), size (MiB, the paper's accounting), compression against the
    full-precision size, then per test set the score (headed `metric`) and its ratio to full precision ("mean ±
    sd" for a row over seeds), then the number of seeds when any row has several, then
    `extra_columns` (key of `ResultRow.extra` -> header).
    """
    reference = _reference(rows)
    datasets = list(reference.scores)
    extra_columns = extra_columns or {}
    with_seeds = any(row.seeds > 1 for row in rows)
    header = ["method", "bits", "size (MiB)", "compression"]
    for name in datasets:
        label = DATASET_NAMES.get(name, name)
        header += [f"{label} {metric}", f"{label} / FP"]
    header += ["seeds"] * with_seeds + list(extra_columns.values())
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, ratios in zip(rows, ratios_to_full_precision(rows)):
        size = f"{row.size_mib:.1f}" if row.size_mib >= 10 else f"{row.size_mib:.3g}"
        cells = [row.name, row.bits or "-", size, f"{reference.size_mib / row.size_mib:.1f}x"]
        for name in datasets:
            sd = row.sd.get(name)
            if sd is None or row.seeds < 2:
                cells += [_format(row.scores.get(name)), _format(ratios.get(name), 3)]
            else:
                ratio = "-" if ratios.get(name) is None else f"{_format(ratios[name], 3)} ± {sd / reference.scores[name]:.3f}"
                cells += [f"{_format(row.scores.get(name))} ± {sd:.2f}", ratio]
        seeds = "-" if row.method == FULL_PRECISION else str(row.seeds)
        cells += [seeds] * with_seeds + [_format(row.extra.get(key)) for key in extra_columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table1_json(rows: list[ResultRow], **context: Any) -> str:
    """The rows with their ratios, and `context` (command, teacher, timings), as indented JSON."""
    ratios = ratios_to_full_precision(rows)
    data = {**context, "rows": [{**asdict(row), "ratio_to_full_precision": r} for row, r in zip(rows, ratios)]}
    return dumps_json(data, indent=2, default=str) + "\n"


def write_table1(
    rows: list[ResultRow],
    out_dir: str | Path,
    stem: str,
    command: str,
    title: str = "Table 1 (CPU testbed)",
    notes: str = "",
    extra_columns: dict[str, str] | None = None,
    metric: str = "PPL",
    **context: Any,
) -> tuple[Path, Path]:
    """Writes `<stem>.md` (the command that made it, the table, notes) and `<stem>.json`; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = f"# {title}\n\nGenerated by `{command}`.\n\n{table1_markdown(rows, extra_columns, metric)}"
    if notes:
        markdown += f"\n{notes.rstrip()}\n"
    md_path, json_path = out_dir / f"{stem}.md", out_dir / f"{stem}.json"
    md_path.write_text(markdown)
    json_path.write_text(table1_json(rows, command=command, **context))
    return md_path, json_path
