"""Tiny random Llama, Mistral, Qwen2 and OPT decoders for the tests (2 layers, width 32: milliseconds).

Llama and Mistral keep their untied LM head (quantized row-wise at E bits); Qwen2 and OPT tie it
to the word embedding. Llama, Mistral and Qwen2 use grouped-query attention (4 query heads, 2
key/value heads).
"""

from __future__ import annotations

from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    OPTConfig,
    OPTForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

VOCAB = 120
_ROPE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=64, bos_token_id=0, eos_token_id=0, pad_token_id=None)


def tiny_llama(vocab: int = VOCAB, **options) -> LlamaForCausalLM:
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, **{**_ROPE, **options}))


def tiny_mistral(vocab: int = VOCAB, **options) -> MistralForCausalLM:
    return MistralForCausalLM(MistralConfig(vocab_size=vocab, sliding_window=8, **{**_ROPE, **options}))


def tiny_qwen2(vocab: int = VOCAB, **options) -> Qwen2ForCausalLM:
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, tie_word_embeddings=True, **{**_ROPE, **options}))


def tiny_opt(vocab: int = VOCAB, **options) -> OPTForCausalLM:
    if "initializer_range" in options:  # OPT names it init_std
        options["init_std"] = options.pop("initializer_range")
    config = OPTConfig(
        vocab_size=vocab, hidden_size=32, word_embed_proj_dim=32, ffn_dim=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=64, bos_token_id=0, eos_token_id=0, pad_token_id=1,
        **options,
    )
    return OPTForCausalLM(config)


DECODERS = {"llama": tiny_llama, "qwen2": tiny_qwen2, "opt": tiny_opt}
# Mistral is Llama's row with another class name (and a sliding window); checked where it is cheap.
DECODERS_AND_MISTRAL = {**DECODERS, "mistral": tiny_mistral}
