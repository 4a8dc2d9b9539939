"""The tiny random models of the tests, all from the named configs of `quantgpt.model_configs`
(`TINY_CONFIGS`, the ones `--model-config tiny`, `tiny-bart`, `tiny-llama`, ... give users).

A test that needs another shape passes overrides, which the config's constructor receives (so that
what it derives from them follows, e.g. Llama's head_dim from the width):

    tiny_config("tiny", vocab_size=100, n_positions=64)     # a fresh GPT2Config
    tiny_model("tiny-bart", seed=0, vocab_size=100)          # a BartForConditionalGeneration

"tiny-mistral" is built here: it is "tiny-llama" under Mistral's class (which adds a sliding window).
`tiny_model` leaves the global RNG alone unless given a seed, and the model in the mode a new one
has (training): each test seeds and switches to eval as it did with its own config.
"""

from __future__ import annotations

import torch
import transformers
from torch import nn
from transformers import PretrainedConfig

from quantgpt.model_configs import TINY_CONFIGS, NamedConfig

TEST_CONFIGS = {
    **TINY_CONFIGS,
    "tiny-mistral": NamedConfig(
        transformers.MistralConfig, **{**TINY_CONFIGS["tiny-llama"].fields, "architectures": ["MistralForCausalLM"]}
    ),
}


def tiny_config(name: str = "tiny", **overrides) -> PretrainedConfig:
    """A fresh config `name` (a key of TINY_CONFIGS, or "tiny-mistral") with `overrides` applied."""
    if name not in TEST_CONFIGS:
        raise KeyError(f"no tiny config {name!r}: use one of {', '.join(TEST_CONFIGS)}")
    return TEST_CONFIGS[name](**overrides)


def tiny_model(name: str = "tiny", seed: int | None = None, model_class: type[nn.Module] | None = None,
               **overrides) -> nn.Module:
    """A random `model_class` (by default the class the config names) of `tiny_config(name, **overrides)`,
    built as `model_class(config)` after `torch.manual_seed(seed)` when a seed is given."""
    config = tiny_config(name, **overrides)
    if model_class is None:
        model_class = getattr(transformers, config.architectures[0])
    elif "architectures" not in overrides:
        config.architectures = [model_class.__name__]
    if seed is not None:
        torch.manual_seed(seed)
    return model_class(config)


__all__ = ["TEST_CONFIGS", "tiny_config", "tiny_model"]
