"""What the files quantgpt writes and later reads back must hold, checked on read.

A file of ours that comes back damaged (edited by hand, truncated by a kill, written by another
version) is refused in one `InputFileError` line naming the file and the field, never read with a
default filled in for what is missing. The checks of each such file:

- `quantization_config` in a saved model's config.json: here (`quant_config_from_saved`, and
  `check_quantizer_tensors` for its agreement with the weights);
- a testbed run's `testbed_result.json`: here (`testbed_result_from_saved`);
- a packed export's index: `export/packed_format.py`;
- a training run's record and checkpoint state: `training/run_dir.py`, `training/checkpoints.py`.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch
import transformers

from .config import QuantConfig
from .errors import InputFileError, QuantgptError
from .validators import is_int, is_number

QUANT_METHOD = "quantgpt"
# The fields every quantgpt release has written. A field added later (pact_init, gamma_gradient,
# quantize_lm_head) may be absent from an older save: its default is the behaviour before it existed.
SAVED_QUANTIZATION_FIELDS = ("method", "bits", "quantize_activations", "quantize_values", "activation_range",
                             "masked_ste", "laq_iterations", "modules_to_not_convert", "quant_method")


def quant_config_from_saved(data: Any, source: str | Path = "config.json") -> QuantConfig:
    """The QuantConfig of a saved `quantization_config`: a JSON object with every field a save
    writes (`SAVED_QUANTIZATION_FIELDS`), each of an allowed value; `source` is the file in messages."""
    where = f"{source}: quantization_config"
    if not isinstance(data, dict):
        raise InputFileError(f"{where} must be a JSON object, not {type(data).__name__}")
    missing = [name for name in SAVED_QUANTIZATION_FIELDS if name not in data]
    if missing:
        raise InputFileError(
            f"{where}.{missing[0]} is missing" + (f" (and {', '.join(missing[1:])})" if missing[1:] else "")
            + ": a saved quantization config names every field; the file is damaged, save the model again"
        )
    if data["quant_method"] != QUANT_METHOD:
        raise InputFileError(f"{where}.quant_method={data['quant_method']!r}: quantgpt reads only {QUANT_METHOD!r}")
    try:
        return QuantConfig.from_dict(data)
    except QuantgptError as error:
        raise InputFileError(f"{where} is not valid: {error}") from None


def _quantizer_tensors(config: transformers.PretrainedConfig, quant: QuantConfig) -> tuple[set[str], list[list[str]]]:
    """The tensor names of `config`'s architecture, and the groups of names of each tensor that
    `quantize_model(quant)` adds (a tied head shares the embedding's scales: one group, saved once)."""
    from .convert import quantize_model  # convert imports much of the package; schemas is imported early

    names = getattr(config, "architectures", None) or []
    model_class = getattr(transformers, names[0], None) if names else None
    if not isinstance(model_class, type) or not issubclass(model_class, torch.nn.Module):
        return set(), []
    with torch.device("meta"):
        model = model_class(config)
        plain = set(model.state_dict())
        quantize_model(model, quant)
    groups: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if name not in plain:
            groups.setdefault(id(tensor), []).append(name)
    return plain, list(groups.values())


def check_quantizer_tensors(config: transformers.PretrainedConfig, tensor_names: Collection[str], source: str | Path) -> None:
    """Refuse a saved `quantization_config` that does not agree with the weights: the quantizer
    tensors (scales) its method makes must be the ones the safetensors files hold."""
    quant = quant_config_from_saved(config.quantization_config, source)
    plain, groups = _quantizer_tensors(config, quant)
    if not groups and not plain:
        return  # an architecture Transformers does not name: the loader's own check applies
    expected = {name for group in groups for name in group}
    missing = [group[0] for group in groups if not any(name in tensor_names for name in group)]
    unexpected = sorted(name for name in tensor_names if name not in plain and name not in expected)
    if missing or unexpected:
        detail = "; ".join(f"{label} {names[0]}" + (f" and {len(names) - 1} more" if names[1:] else "")
                           for label, names in (("missing", missing), ("unexpected", unexpected)) if names)
        raise InputFileError(
            f"{source}: quantization_config.method={quant.method!r} does not agree with the saved weights ({detail}); "
            "the config or the weights are damaged, save the model again"
        )


def _finite(value: Any, minimum: float = 0.0) -> bool:
    return is_number(value) and math.isfinite(value) and value >= minimum


def _score(value: Any) -> bool:
    """A metric: a finite number >= 0, or null (a diverged one, written as null by `jsonio`)."""
    return value is None or _finite(value)


def testbed_result_from_saved(data: Any, source: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings, result) of a testbed run's `testbed_result.json` contents `data`: settings an
    object; result the fields of a `MethodResult` but its folder, every score a finite number >= 0
    or null (diverged: returned as NaN, as the run's own non-finite score was written null)."""
    where = f"{source}:"
    if not isinstance(data, dict) or set(data) != {"settings", "result"}:
        raise InputFileError(f"{where} expected an object of settings and result")
    settings, result = data["settings"], data["result"]
    if not isinstance(settings, dict):
        raise InputFileError(f"{where} settings must be an object, not {type(settings).__name__}")
    if not isinstance(result, dict):
        raise InputFileError(f"{where} result must be an object, not {type(result).__name__}")
    fields = {
        "method": lambda v: isinstance(v, str) and bool(v),
        "bits": lambda v: isinstance(v, str) and bool(v),
        "select_score": _score,
        "scores": lambda v: isinstance(v, dict) and all(isinstance(k, str) and _score(s) for k, s in v.items()),
        "wall_seconds": _finite,
        "peak_rss_mib": _finite,
        "seconds_per_step": lambda v: v is None or _finite(v),
        "seed": lambda v: v is None or (is_int(v) and v >= 0),
    }
    if set(result) != set(fields):
        absent, extra = sorted(set(fields) - set(result)), sorted(set(result) - set(fields))
        problem = f"result.{absent[0]} is missing" if absent else f"result.{extra[0]} is not a result field"
        raise InputFileError(f"{where} {problem}")
    for name, test in fields.items():
        if not test(result[name]):
            raise InputFileError(f"{where} result.{name}={result[name]!r} is not allowed")
    nan = float("nan")
    result = {**result, "select_score": nan if result["select_score"] is None else result["select_score"],
              "scores": {k: nan if s is None else s for k, s in result["scores"].items()}}
    return settings, result


__all__ = ["SAVED_QUANTIZATION_FIELDS", "check_quantizer_tensors", "quant_config_from_saved", "testbed_result_from_saved"]
