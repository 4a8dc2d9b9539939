"""Reading JSON-lines data files, with errors that name the file and the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from quantgpt.tasks.errors import DataError


def read_json_lines(path: str | Path) -> list[tuple[int, Any]]:
    """(line number, JSON value) for each non-blank line of `path`, so that callers can name the
    line of a record they reject; a missing file or a line that is not JSON is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append((number, json.loads(line)))
            except json.JSONDecodeError as error:
                raise DataError(f"{path}:{number}: expected one JSON value a line ({error.msg})") from None
    return records
