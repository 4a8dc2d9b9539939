"""The documents of WikiText-2 raw test read from a local file, for the quantgpt_wikitext2 lm-eval task."""

from __future__ import annotations

import re
from pathlib import Path

from datasets import Dataset, DatasetDict

REPO_ROOT = Path(__file__).resolve().parents[2]
# An article starts at a level-1 heading line, " = Title = " (sections are " = = Section = = "),
# followed by a blank line: a few lines of formulas (" = 1 henry and capacitance C = ") are not.
ARTICLE_HEADING = re.compile(r" = [^=].* = ")


def _resolve(data_file: str) -> Path:
    path = Path(data_file).expanduser()
    for candidate in (path, REPO_ROOT / path):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{data_file}: WikiText-2 raw test not found (set dataset_kwargs.data_file in quantgpt_wikitext2.yaml)")


def split_articles(text: str) -> list[str]:
    """The text cut before each article heading; the pieces, each ending in its "\\n", join back to it."""
    lines = text.split("\n")
    trailing = lines.pop() if lines and lines[-1] == "" else None
    starts = [
        i for i, line in enumerate(lines[:-1]) if ARTICLE_HEADING.fullmatch(line) and not lines[i + 1].strip()
    ] or [0]
    starts[0] = 0  # the blank line before the first heading belongs to the first article
    ends = starts[1:] + [len(lines)]
    pages = ["".join(line + "\n" for line in lines[a:b]) for a, b in zip(starts, ends)]
    if trailing is None:  # no final "\n" in the file: none on the last page either
        pages[-1] = pages[-1].removesuffix("\n")
    return pages


def load_wikitext2_raw(data_file: str, **metadata) -> DatasetDict:
    text = _resolve(data_file).read_text(encoding="utf-8")
    return DatasetDict({"test": Dataset.from_dict({"page": split_articles(text)})})


def process_results(doc, results):
    (loglikelihood,) = results
    words = len(re.split(r"\s+", doc["page"]))  # lm-eval's wikitext counts words this way
    size = len(doc["page"].encode("utf-8"))
    return {
        "word_perplexity": (loglikelihood, words),
        "byte_perplexity": (loglikelihood, size),
        "bits_per_byte": (loglikelihood, size),
    }
