"""Loading a quantized model saved with `model.save_pretrained(dir)`.

Saving needs nothing of ours: the quantization config sits in `config.json` under
`quantization_config` (`quant_method: "quantgpt"`) and the scales are ordinary tensors of the state
dict, written by Transformers to safetensors. Loading is Transformers' `from_pretrained` with the
quantizer of `hf_quantizer.py`: it rebuilds the architecture from the config, quantizes it the same
way, then loads every tensor (no pickle anywhere); `load_quantized` also refuses a partial match.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
import transformers
from torch import nn
from transformers import AutoConfig
from transformers.utils import logging as transformers_logging

from . import hf_quantizer  # noqa: F401  (registers the quantizer from_pretrained uses below)
from .config import QuantConfig
from .errors import QuantgptError
from .model_files import check_model_dir, quiet_progress_bars


class CheckpointError(QuantgptError, ValueError):
    """A checkpoint directory is missing a file or does not match its config."""


def model_class_for(config) -> type[nn.Module]:
    """The Transformers class named first in `config.architectures`."""
    names = getattr(config, "architectures", None) or []
    if not names or not hasattr(transformers, names[0]):
        raise CheckpointError(f"config.json names no known Transformers architecture (architectures={names!r})")
    return getattr(transformers, names[0])


@contextlib.contextmanager
def _no_load_report() -> Iterator[None]:
    """Transformers' warnings off while the model loads: its load report (a table of missing and
    unexpected keys) would print before `load_quantized`'s own one-line refusal of the same keys."""
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)


def load_quantized(directory: str | Path, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Rebuild a model saved by `save_pretrained` after `quantize_model`, with every tensor restored."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{directory}: no config.json; pass the directory written by save_pretrained")
    check_model_dir(directory)  # a damaged config.json or weight file, or a pickle, fails here with one line
    config = AutoConfig.from_pretrained(directory)
    quant = getattr(config, "quantization_config", None)
    if not quant:
        raise CheckpointError(f"{directory}: config.json has no quantization_config; load it with from_pretrained")
    quant_config = QuantConfig.from_dict(dict(quant))
    # Transformers' own loading, through the quantizer quantgpt registers (hf_quantizer.py): the
    # model `AutoModel*.from_pretrained(directory)` gives, refused here unless every tensor matched.
    with quiet_progress_bars(), _no_load_report():
        model, info = model_class_for(config).from_pretrained(
            directory, dtype=dtype, output_loading_info=True, use_safetensors=True  # never a pickle
        )
    missing, unexpected = sorted(info["missing_keys"]), sorted(info["unexpected_keys"])
    mismatched = sorted(str(key) for key in info.get("mismatched_keys", ()))
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{directory}: checkpoint does not match {type(model).__name__} quantized with "
            f"{quant_config.method} {quant_config.bits}: missing {missing[:5]}, unexpected {unexpected[:5]}"
            + (f", mismatched {mismatched[:5]}" if mismatched else "")
        )
    return model
