"""Loading a quantized model saved with `model.save_pretrained(dir)`.

Saving needs nothing of ours: the quantization config sits in `config.json` under
`quantization_config` and the scales are ordinary tensors of the state dict, written by
Transformers to safetensors. Loading rebuilds the architecture from the config, quantizes it the
same way, then loads every tensor strictly (no pickle anywhere).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig

from .config import QuantConfig
from .convert import quantize_model

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"


class CheckpointError(ValueError):
    """A checkpoint directory is missing a file or does not match its config."""


def _read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    if (directory / SAFE_WEIGHTS).is_file():
        return load_file(directory / SAFE_WEIGHTS)
    if (directory / SAFE_INDEX).is_file():
        index = json.loads((directory / SAFE_INDEX).read_text())
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index["weight_map"].values())):
            state.update(load_file(directory / shard))
        return state
    raise CheckpointError(f"{directory}: no {SAFE_WEIGHTS} or {SAFE_INDEX}; save the model with save_pretrained(dir)")


def model_class_for(config) -> type[nn.Module]:
    """The Transformers class named first in `config.architectures`."""
    names = getattr(config, "architectures", None) or []
    if not names or not hasattr(transformers, names[0]):
        raise CheckpointError(f"config.json names no known Transformers architecture (architectures={names!r})")
    return getattr(transformers, names[0])


def load_quantized(directory: str | Path, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Rebuild a model saved by `save_pretrained` after `quantize_model`, with every tensor restored."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{directory}: no config.json; pass the directory written by save_pretrained")
    config = AutoConfig.from_pretrained(directory)
    quant = getattr(config, "quantization_config", None)
    if not quant:
        raise CheckpointError(f"{directory}: config.json has no quantization_config; load it with from_pretrained")
    quant_config = QuantConfig.from_dict(dict(quant))
    del config.quantization_config
    model = model_class_for(config)._from_config(config, dtype=dtype)
    quantize_model(model, quant_config)
    state = _read_state_dict(directory)
    result = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{directory}: checkpoint does not match {type(model).__name__} quantized with "
            f"{quant_config.method} {quant_config.bits}: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    model.eval()
    return model
