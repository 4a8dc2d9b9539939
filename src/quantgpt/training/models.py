"""Getting the models a run needs: pretrained (local dir or hub name), fresh from a config, or saved.

Every failure a user can cause (a missing directory, a damaged config.json or weight file, a
quantized teacher, a hub name offline) raises a QuantgptError with one line, which the command line
prints as is. Local model files are checked by `quantgpt.model_files` before anything loads them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from torch import nn
from transformers import BartConfig, GPT2Config, LlamaConfig, OPTConfig, PretrainedConfig, Qwen2Config

from ..config import QuantConfig
from ..convert import quantize_model
from ..errors import InputFileError, MissingInputError, UsageError
from ..model_files import CONFIG_FILE, check_model_dir, quiet_progress_bars, read_model_config
from ..serialization import load_quantized
from ..size import KNOWN_CONFIGS

# Random tiny models for tests and smoke runs; vocab_size is set from the tokenizer.
TINY_CONFIGS = {
    "tiny": lambda: GPT2Config(n_layer=2, n_embd=32, n_head=2, architectures=["GPT2LMHeadModel"]),
    "tiny-bart": lambda: BartConfig(
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        architectures=["BartForConditionalGeneration"],
    ),
    # Widths are multiples of 256 so that every matrix also fits GGUF's 256-wide ternary blocks.
    "tiny-llama": lambda: LlamaConfig(
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        architectures=["LlamaForCausalLM"],
    ),
    "tiny-qwen2": lambda: Qwen2Config(
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,  # as the small Qwen2 releases
        architectures=["Qwen2ForCausalLM"],
    ),
    "tiny-opt": lambda: OPTConfig(
        hidden_size=256,
        word_embed_proj_dim=256,
        ffn_dim=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=1024,
        architectures=["OPTForCausalLM"],
    ),
}


def _is_local(name_or_path: str | Path) -> bool:
    """A path that exists, or one written as a path (./x, /x, ~/x): never sent to the hub."""
    return Path(name_or_path).expanduser().exists() or str(name_or_path).startswith((".", "/", "~"))


def _instantiate(model_class: Any, config: PretrainedConfig) -> nn.Module:
    if hasattr(model_class, "from_config"):  # an Auto class
        return model_class.from_config(config)
    return model_class._from_config(config)


def model_config_from(name_or_path: str, vocab_size: int | None = None) -> PretrainedConfig:
    """A named config ("tiny", "tiny-bart", "tiny-llama", "tiny-qwen2", "tiny-opt", "gpt2", "bart-base"),
    a config.json or a directory holding one.
    `vocab_size` (the tokenizer's) replaces the config's."""
    known = {**KNOWN_CONFIGS, **TINY_CONFIGS}
    if name_or_path in known:
        config = known[name_or_path]()
    else:
        path = Path(name_or_path).expanduser()
        if not path.is_file() and not (path / CONFIG_FILE).is_file():
            raise MissingInputError(
                f"--model-config {name_or_path}: not a known name ({', '.join(known)}) nor a JSON config file or a directory holding config.json"
            )
        config = read_model_config(path)
    if vocab_size is not None:
        config.vocab_size = vocab_size
    return config


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
    """A full-precision model from a local `save_pretrained` directory or a hub name."""
    check_model_source(name_or_path, role)
    try:
        with quiet_progress_bars():
            return model_class.from_pretrained(str(name_or_path), use_safetensors=True)  # never a pickle
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
    """The student: a deep copy of the full-precision teacher, quantized in place (SPEC section 5)."""
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
    "TINY_CONFIGS",
    "check_model_source",
    "fresh_model",
    "freeze",
    "model_config_from",
    "pretrained_model",
    "quantized_copy",
    "saved_model",
    "tokenizer_source",
]
