"""The user's own data, through `datasets`: files given per split, a local dataset directory, a hub dataset.

`--dataset text --train-file A --eval-file B [--test-file C]` reads plain text files (the whole
file, as the named corpora are read) or JSON lines (`.jsonl` / `.json`, one record a line, the text
in `--text-column`). Any other `--dataset` value that is not a named corpus is a local directory
(a `save_to_disk` dataset, or a folder of data files whose names give the splits) or a hub dataset
(`owner/name`, with `--dataset-config`), its text in `--text-column`.

Splits are "train", "valid" (also "validation") and "test"; a dataset's own split names are used
as they are, "valid" and "validation" standing for each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantgpt.errors import UsageError
from quantgpt.tasks.errors import DataError

FILES = "text"  # --dataset text: the files of --train-file / --eval-file / --test-file
SPLIT_FLAGS = {"train": "--train-file", "valid": "--eval-file", "test": "--test-file"}
JSON_SUFFIXES = (".jsonl", ".json")
# The data files `load_dataset(folder)` reads (its packaged builders'); a folder with none of them
# gets a message of datasets' about other builders' files (task.toml), so it is refused here first.
DATA_SUFFIXES = (".txt", ".csv", ".tsv", ".json", ".jsonl", ".parquet", ".arrow")
_SPLIT_ALIASES = {"valid": ("valid", "validation"), "validation": ("validation", "valid")}


def _candidates(split: str) -> tuple[str, ...]:
    return _SPLIT_ALIASES.get(split, (split,))


def data_file_for(data_files: Mapping[str, str], split: str) -> str:
    """The file given for `split` ("valid" and "validation" alike); a split without one is a UsageError."""
    key = next((name for name in _candidates(split) if name in data_files), None)
    if key is None:
        given = ", ".join(SPLIT_FLAGS.get(name, name) for name in data_files)
        wanted = SPLIT_FLAGS.get(_candidates(split)[0])
        hint = f"pass {wanted}" if wanted else f"use one of {', '.join(data_files)}"
        raise UsageError(f"split {split!r} has no file ({given} given): {hint}")
    return data_files[key]


@dataclass(frozen=True)
class TextSource:
    """Where the user's text is: `dataset` is "text" (the files of `data_files`, by split), a local
    dataset directory or a hub name; `text_column` names the text in JSON lines and datasets."""

    dataset: str
    data_files: Mapping[str, str] = field(default_factory=dict)
    dataset_config: str | None = None
    text_column: str = "text"

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_files", {split: str(path) for split, path in dict(self.data_files).items()})
        unknown = sorted(set(self.data_files) - set(SPLIT_FLAGS))
        if unknown:
            raise UsageError(f"data_files has splits {unknown}: allowed are {', '.join(SPLIT_FLAGS)}")
        if self.dataset == FILES:
            if not self.data_files:
                raise UsageError("--dataset text reads your files: pass --train-file and --eval-file (or --test-file)")
            for split, path in self.data_files.items():
                if Path(path).is_dir():
                    raise DataError(f"{SPLIT_FLAGS[split]} {path}: a directory, not a file; for a folder of data files use --dataset {path}")
                if not Path(path).is_file():
                    raise DataError(f"{SPLIT_FLAGS[split]} {path}: file not found")
        elif self.data_files:
            flags = ", ".join(SPLIT_FLAGS[split] for split in self.data_files)
            raise UsageError(f"{flags} is read with --dataset text, not --dataset {self.dataset}")
        if not self.text_column:
            raise UsageError("--text-column must name a column")

    def describe(self) -> str:
        if self.dataset == FILES:
            return ", ".join(f"{SPLIT_FLAGS[split]} {path}" for split, path in self.data_files.items())
        return self.dataset + (f" ({self.dataset_config})" if self.dataset_config else "")

    def texts(self, split: str) -> list[str]:
        """The texts of one split: the whole file for plain text, one string per record otherwise."""
        if self.dataset == FILES:
            return self._file_texts(split)
        if Path(self.dataset).expanduser().is_dir():
            with _quiet_datasets():
                return self._column(self._local_dataset(split), split)
        return self._column(self._hub_dataset(split), split)

    # --- the three sources
    def _file_texts(self, split: str) -> list[str]:
        with _quiet_datasets():
            return self._read_file_texts(split)

    def _read_file_texts(self, split: str) -> list[str]:
        from datasets import load_dataset

        path = data_file_for(self.data_files, split)
        if Path(path).suffix.lower() in JSON_SUFFIXES:
            try:
                rows = load_dataset("json", data_files=path, split="train")
            except Exception as error:  # pyarrow's and datasets' parse errors share no base class
                raise DataError(f"{path}: expected JSON lines, one object a line ({_first_line(error)})") from None
            return self._column(rows, split, where=path)
        try:
            # sample_by="document": the file in one piece, so it tokenizes as the release files do.
            rows = load_dataset("text", data_files=path, split="train", sample_by="document")
        except Exception as error:  # datasets wraps the decode error in its DatasetGenerationError
            decode_error = _unicode_error_in(error)
            if decode_error is None:
                raise
            raise DataError(
                f"{path}: expected UTF-8 text ({decode_error.reason} at byte {decode_error.start})"
            ) from None
        return list(rows["text"])

    def _local_dataset(self, split: str) -> Any:
        from datasets import DatasetDict, load_dataset, load_from_disk

        path = Path(self.dataset).expanduser()
        saved = (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()  # save_to_disk
        data_files = (file for file in path.rglob("*") if file.is_file())  # train.jsonl.gz counts: datasets decompresses
        if not saved and not any(set(map(str.lower, file.suffixes)) & set(DATA_SUFFIXES) for file in data_files):
            raise DataError(
                f"--dataset {path}: the folder holds no data files ({', '.join(DATA_SUFFIXES)}); "
                "name them by split (train.jsonl, validation.jsonl) or pass a save_to_disk folder"
            )
        try:
            # a folder of data files: datasets infers the format and the splits from the file names
            dataset = load_from_disk(str(path)) if saved else load_dataset(str(path), self.dataset_config)
        except Exception as error:  # datasets' own errors (no data files, bad format) share no base class
            raise DataError(f"--dataset {path}: not a dataset directory datasets can read ({_first_line(error)})") from None
        if not isinstance(dataset, DatasetDict):
            raise DataError(f"{path}: a single dataset without splits; save a DatasetDict with train/validation/test")
        name = next((name for name in _candidates(split) if name in dataset), None)
        if name is None:
            raise UsageError(f"--dataset {path}: no split {split!r}; it has {', '.join(dataset)}")
        return dataset[name]

    def _hub_dataset(self, split: str) -> Any:
        from datasets import load_dataset
        from datasets.exceptions import DatasetNotFoundError

        candidates = _candidates(split)
        for name in candidates:
            try:
                return load_dataset(self.dataset, self.dataset_config, split=name)
            except DatasetNotFoundError as error:
                raise DataError(
                    f"--dataset {self.dataset}: not a named corpus, a local directory or a hub dataset reachable from here "
                    f"({_first_line(error)}); for your own files use --dataset text --train-file ..."
                ) from None
            except ValueError as error:  # datasets names the splits it has in "Unknown split ..."
                if "Unknown split" not in str(error) or name == candidates[-1]:
                    raise UsageError(f"--dataset {self.describe()}: {_first_line(error)}") from None
        raise AssertionError("unreachable")

    def _column(self, rows: Any, split: str, where: str | None = None) -> list[str]:
        where = where or f"--dataset {self.describe()} split {split!r}"
        if self.text_column not in rows.column_names:
            raise DataError(f"{where}: no column {self.text_column!r} (columns: {', '.join(rows.column_names)}); pick one with --text-column")
        texts = rows[self.text_column]
        for number, text in enumerate(texts, start=1):
            if not isinstance(text, str):
                raise DataError(f"{where}: row {number} of {self.text_column!r} is {type(text).__name__}, expected text")
        if not texts:
            raise DataError(f"{where}: no rows")
        return list(texts)

    def config(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "data_files": dict(self.data_files),
                "dataset_config": self.dataset_config, "text_column": self.text_column}


def texts_to_lines(texts: list[str]) -> list[str]:
    """The texts as lines that `tokenize_to_blocks` joins with "\\n": a whole file back into its lines,
    a record per line (a record's final "\\n", as WikiText rows carry, is not doubled)."""
    lines: list[str] = []
    for text in texts:
        text = text.removesuffix("\n")
        lines.extend(text.split("\n"))
    return lines


def _unicode_error_in(error: BaseException | None) -> UnicodeDecodeError | None:
    """The UnicodeDecodeError behind `error` (itself, or its cause or context, at any depth), if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UnicodeDecodeError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """No `datasets` progress bar ("Generating split") and no log line ("Failed to load JSON ...",
    logged at error level before it raises) while a local file or folder loads: a data error is
    our one line, and a local load takes a moment."""
    import datasets.utils as datasets_utils
    from datasets.utils import logging as datasets_logging

    was_disabled = datasets_utils.are_progress_bars_disabled()
    verbosity = datasets_logging.get_verbosity()
    datasets_utils.disable_progress_bars()
    datasets_logging.set_verbosity(datasets_logging.CRITICAL)
    try:
        yield
    finally:
        datasets_logging.set_verbosity(verbosity)
        if not was_disabled:
            datasets_utils.enable_progress_bars()
