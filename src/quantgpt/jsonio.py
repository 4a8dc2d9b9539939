"""The one way quantgpt writes JSON: always valid JSON, a non-finite number as null.

Python's `json` writes NaN and Infinity, which JSON does not have (jq, JavaScript and most parsers
reject the file). A diverged metric is therefore written as null, and `allow_nan=False` makes sure
nothing non-finite slips through another way.
"""

from __future__ import annotations

import json
import math
from pathlib import PurePath
from typing import Any


def json_ready(value: Any) -> Any:
    """`value` with tensor and numpy scalars as Python numbers, tuples as lists, paths as strings,
    and NaN / infinities as None, recursively."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # 0-d tensors, numpy scalars
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, PurePath):
        return str(value)
    return value


def dumps_json(data: Any, *, indent: int | None = None, sort_keys: bool = False, default: Any = None) -> str:
    """`data` as a JSON string (see `json_ready` for what is converted; `default` as in `json.dumps`)."""
    return json.dumps(json_ready(data), indent=indent, sort_keys=sort_keys, default=default, allow_nan=False)
