"""Tiny random Llama, Mistral, Qwen2 and OPT decoders for the tests (2 layers, width 32: milliseconds).

Llama and Mistral keep their untied LM head (quantized row-wise at E bits); Qwen2 and OPT tie it
to the word embedding. Llama, Mistral and Qwen2 use grouped-query attention (4 query heads, 2
key/value heads).
"""

from __future__ import annotations

from tiny_models import tiny_model
from transformers import LlamaForCausalLM, MistralForCausalLM, OPTForCausalLM, Qwen2ForCausalLM

VOCAB = 120
# The named configs ("tiny-llama", ...) at width 32 and 64 positions instead of 256 and 1024.
_SMALL = dict(hidden_size=32, max_position_embeddings=64, bos_token_id=0, eos_token_id=0)
_ROPE = dict(_SMALL, intermediate_size=64, pad_token_id=None)


def tiny_llama(vocab: int = VOCAB, **options) -> LlamaForCausalLM:
    return tiny_model("tiny-llama", vocab_size=vocab, **{**_ROPE, **options})


def tiny_mistral(vocab: int = VOCAB, **options) -> MistralForCausalLM:
    return tiny_model("tiny-mistral", vocab_size=vocab, **{**_ROPE, "sliding_window": 8, **options})


def tiny_qwen2(vocab: int = VOCAB, **options) -> Qwen2ForCausalLM:
    return tiny_model("tiny-qwen2", vocab_size=vocab, **{**_ROPE, **options})  # tied head, as "tiny-qwen2"


def tiny_opt(vocab: int = VOCAB, **options) -> OPTForCausalLM:
    if "initializer_range" in options:  # OPT names it init_std
        options["init_std"] = options.pop("initializer_range")
    return tiny_model("tiny-opt", vocab_size=vocab, **{**_SMALL, "word_embed_proj_dim": 32, "ffn_dim": 64,
                                                       "pad_token_id": 1, **options})


DECODERS = {"llama": tiny_llama, "qwen2": tiny_qwen2, "opt": tiny_opt}
# Mistral is Llama's row with another class name (and a sliding window); checked where it is cheap.
DECODERS_AND_MISTRAL = {**DECODERS, "mistral": tiny_mistral}
