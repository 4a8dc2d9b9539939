"""Model configurations by name, and the one reader of a `--model-config`: a name, a config.json or a
directory holding one.

`KNOWN_CONFIGS` are the paper's two models, spelled out since the hub is out of reach offline;
`TINY_CONFIGS` are random tiny models for tests and smoke runs (vocab_size is set from the
tokenizer). Each entry builds a fresh config when called; keyword arguments replace or add fields
at construction, so that what a config derives from them follows (Llama's head_dim from the width):
`TINY_CONFIGS["tiny-llama"](hidden_size=32, vocab_size=120)`.

A user's config.json is read by `quantgpt.model_files.read_model_config`, which checks it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from transformers import BartConfig, GPT2Config, LlamaConfig, OPTConfig, PretrainedConfig, Qwen2Config

from .errors import MissingInputError
from .model_files import CONFIG_FILE, read_model_config


class NamedConfig:
    """Builds a fresh `config_class(**fields)`; keyword overrides replace or add fields."""

    def __init__(self, config_class: type[PretrainedConfig], **fields: Any) -> None:
        self.config_class = config_class
        self.fields = fields

    def __call__(self, **overrides: Any) -> PretrainedConfig:
        return self.config_class(**{**copy.deepcopy(self.fields), **overrides})

    def __repr__(self) -> str:
        return f"NamedConfig({self.config_class.__name__}, {self.fields!r})"


# Configurations known offline: the hub is out of reach, and the paper's two models are small to spell out.
KNOWN_CONFIGS = {
    "gpt2": NamedConfig(GPT2Config, architectures=["GPT2LMHeadModel"]),
    "bart-base": NamedConfig(
        BartConfig, architectures=["BartForConditionalGeneration"], vocab_size=50265, d_model=768,
        encoder_layers=6, decoder_layers=6, encoder_attention_heads=12, decoder_attention_heads=12,
        encoder_ffn_dim=3072, decoder_ffn_dim=3072, max_position_embeddings=1024,
    ),
}

# Random tiny models for tests and smoke runs; vocab_size is set from the tokenizer.
TINY_CONFIGS = {
    "tiny": NamedConfig(GPT2Config, n_layer=2, n_embd=32, n_head=2, architectures=["GPT2LMHeadModel"]),
    "tiny-bart": NamedConfig(
        BartConfig, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, architectures=["BartForConditionalGeneration"],
    ),
    # Widths are multiples of 256 so that every matrix also fits GGUF's 256-wide ternary blocks.
    "tiny-llama": NamedConfig(
        LlamaConfig, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, architectures=["LlamaForCausalLM"],
    ),
    "tiny-qwen2": NamedConfig(
        Qwen2Config, hidden_size=256, intermediate_size=768, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, architectures=["Qwen2ForCausalLM"],
        tie_word_embeddings=True,  # as the small Qwen2 releases
    ),
    "tiny-opt": NamedConfig(
        OPTConfig, hidden_size=256, word_embed_proj_dim=256, ffn_dim=512, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=1024, architectures=["OPTForCausalLM"],
    ),
}


SPECIAL_TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def load_model_config(
    name_or_path: str | Path, vocab_size: int | None = None, special_token_ids: dict[str, int | None] | None = None
) -> PretrainedConfig:
    """A fresh named config ("gpt2", "bart-base", or a tiny one: "tiny", "tiny-bart", "tiny-llama",
    "tiny-qwen2", "tiny-opt"), or the checked config of a JSON file (any name) or of a directory's
    config.json. `vocab_size` (the tokenizer's) replaces the config's; a special token id the new
    vocabulary does not hold (GPT-2's 50256 beside a 512-token tokenizer, which Transformers warns
    about on every load) becomes the tokenizer's id for that role (`special_token_ids`) or None.
    Anything else is refused in one line (MissingInputError), as are damaged or impossible config
    files (InputFileError)."""
    known = {**KNOWN_CONFIGS, **TINY_CONFIGS}
    if name_or_path in known:
        config = known[name_or_path]()
    else:
        path = Path(name_or_path).expanduser()
        if not path.is_file() and not (path / CONFIG_FILE).is_file():
            raise MissingInputError(
                f"--model-config {name_or_path}: not a known name ({', '.join(known)}) "
                f"nor a JSON config file or a directory holding {CONFIG_FILE}"
            )
        config = read_model_config(path)
    if vocab_size is not None:
        config.vocab_size = vocab_size
        for name in SPECIAL_TOKEN_IDS:
            value = getattr(config, name, None)
            if isinstance(value, int) and not 0 <= value < vocab_size:
                setattr(config, name, (special_token_ids or {}).get(name))
    return config


__all__ = ["KNOWN_CONFIGS", "SPECIAL_TOKEN_IDS", "TINY_CONFIGS", "NamedConfig", "load_model_config"]
