"""Getting the models a run needs: pretrained (local dir or hub name), fresh from a config, or saved.

Every failure a user can cause (a missing directory, a damaged config.json or weight file, a
quantized teacher, a hub name offline) raises a QuantgptError with one line, which the command line
prints as is. Local model files are checked by `quantgpt.model_files` before anything loads them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig

from ..config import QuantConfig
from ..convert import quantize_model
from ..errors import InputFileError, UsageError
from ..model_files import check_model_dir, quiet_progress_bars
from ..serialization import load_quantized


def _is_local(name_or_path: str | Path) -> bool:
    """A path that exists, or one written as a path (./x, /x, ~/x): never sent to the hub."""
    return Path(name_or_path).expanduser().exists() or str(name_or_path).startswith((".", "/", "~"))


def _instantiate(model_class: Any, config: PretrainedConfig) -> nn.Module:
    if hasattr(model_class, "from_config"):  # an Auto class
        return model_class.from_config(config)
    return model_class._from_config(config)


def fresh_model(model_class: Any, config: PretrainedConfig) -> nn.Module:
    """A randomly initialized model of `config` (seed the RNG first for a reproducible one)."""
    return _instantiate(model_class, config)


def check_model_source(name_or_path: str | Path, role: str = "--model") -> None:
    """Fail with one line unless `name_or_path` is a hub name or a directory holding a
    full-precision `save_pretrained` model."""
    if not _is_local(name_or_path):
        return
    config = check_model_dir(name_or_path, role)
    if getattr(config, "quantization_config", None):
        raise InputFileError(f"{role} {name_or_path}: this model is quantized; pass the full-precision model")


def pretrained_model(model_class: Any, name_or_path: str | Path, role: str = "--model") -> nn.Module:
    """A full-precision model from a local `save_pretrained` directory or a hub name, in float32
    whatever the checkpoint's dtype (Transformers keeps a float16 checkpoint's dtype, and the training
    loop trains and distils in float32)."""
    check_model_source(name_or_path, role)
    try:
        with quiet_progress_bars():
            return model_class.from_pretrained(str(name_or_path), use_safetensors=True, dtype=torch.float32)  # never a pickle
    except OSError as error:
        raise InputFileError(f"{role} {name_or_path}: could not load it ({str(error).splitlines()[0]})") from None


def saved_model(model_class: Any, directory: str | Path) -> nn.Module:
    """A model saved by a run: `load_quantized` for a quantized one, `from_pretrained` otherwise."""
    path = Path(directory).expanduser()
    config = check_model_dir(path, "model")
    if getattr(config, "quantization_config", None):
        return load_quantized(path)
    with quiet_progress_bars():
        return model_class.from_pretrained(str(path), use_safetensors=True)  # never a pickle


def quantized_copy(teacher: nn.Module, config: QuantConfig) -> nn.Module:
    """The student: a deep copy of the teacher, quantized in place (docs/method.md#token-level-contrastive-distillation)."""
    student = copy.deepcopy(teacher)
    quantize_model(student, config)
    return student


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no gradients: the teacher is a fixed target."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def tokenizer_source(explicit: str | None, model_dir: str | Path | None) -> str:
    """Where the tokenizer comes from: `--tokenizer`, else the model's directory or hub name."""
    if explicit:
        return str(explicit)
    if model_dir is None:
        raise UsageError("no tokenizer: pass --tokenizer (e.g. ../shared/data/gpt2-tokenizer) with --model-config")
    return str(model_dir)


__all__ = [
    "check_model_source",
    "fresh_model",
    "freeze",
    "pretrained_model",
    "quantized_copy",
    "saved_model",
    "tokenizer_source",
]
