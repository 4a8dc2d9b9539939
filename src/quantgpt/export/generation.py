"""Text generation with a loaded packed model: the tokenizer beside it and `model.generate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputFileError, MissingInputError, QuantgptError, UsageError

# The decoder families load the saved tokenizer files as they are (tokenizer.json), through the
# same loader training uses: AutoTokenizer in Transformers 5 would pick the class from config.json's
# model type (Qwen2Tokenizer for a qwen2 run) and re-split the text with that family's rules.
_TOKENIZER_LOADERS = {
    **dict.fromkeys(("gpt2", "llama", "mistral", "qwen2", "opt"), "load_decoder_tokenizer"),
    "bart": "load_bart_tokenizer",
}


def load_packed_tokenizer(source: str | Path, model_type: str) -> Any:
    """The tokenizer for `model_type` from `source`: a packed model directory holding the run's
    tokenizer files, or a tokenizer directory such as ../shared/data/gpt2-tokenizer."""
    loader_name = _TOKENIZER_LOADERS.get(model_type)
    if loader_name is None:
        raise UsageError(f"model_type={model_type!r} has no tokenizer loader: supported are {sorted(_TOKENIZER_LOADERS)}")
    path = Path(source)
    if path.exists() and not path.is_dir():
        raise InputFileError(f"{path}: not a tokenizer directory")
    if path.is_dir() and not any((path / name).is_file() for name in ("tokenizer.json", "vocab.json")):
        raise MissingInputError(f"{path}: no tokenizer files (tokenizer.json or vocab.json); pass --tokenizer DIR")
    # Imported here: quantgpt.tokenization pulls in the task modules (rouge-score, nltk), ~150 MiB
    # of resident memory that a runtime which only decodes should not carry.
    from .. import tokenization

    try:
        return getattr(tokenization, loader_name)(path)
    except QuantgptError:
        raise
    except Exception as error:  # the tokenizers library raises plain Exceptions for a damaged file
        detail = " ".join(str(error).split())[:200]
        raise InputFileError(f"{path}: the tokenizer files do not load ({type(error).__name__}: {detail})") from None


def check_lengths(config: Any, prompt_tokens: int, max_new_tokens: int) -> None:
    """Refuse, before decoding starts, a prompt or a length the model's positions cannot hold."""
    if prompt_tokens < 1:
        raise UsageError("the prompt is empty after tokenization: give some text")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise UsageError(f"max_new_tokens={max_new_tokens!r} is not allowed: use an integer >= 1")
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int):
        return
    if config.is_encoder_decoder:
        if prompt_tokens > positions:
            raise UsageError(f"the prompt is {prompt_tokens} tokens; the encoder holds at most {positions}: shorten it")
        if max_new_tokens + 1 > positions:
            raise UsageError(f"--max-new-tokens {max_new_tokens} is too many: the decoder holds at most {positions - 1}")
        return
    if prompt_tokens >= positions:
        raise UsageError(f"the prompt is {prompt_tokens} tokens; the model holds {positions} positions: shorten it")
    if prompt_tokens + max_new_tokens > positions:
        raise UsageError(
            f"--max-new-tokens {max_new_tokens} is too many: the prompt's {prompt_tokens} tokens leave "
            f"{positions - prompt_tokens} of the model's {positions} positions"
        )


@torch.no_grad()
def generate_text(
    model: nn.Module,
    tokenizer: Any,
    prompt: str,
    max_new_tokens: int = 32,
    do_sample: bool = False,
    **generate_kwargs: Any,
) -> str:
    """The text `model.generate` produces for `prompt`: for a decoder-only model the continuation
    (without the prompt), for an encoder-decoder (BART) the decoder's output. Greedy by default;
    other `generate` options (num_beams, temperature, top_k, top_p, ...) pass through."""
    inputs = tokenizer(prompt, return_tensors="pt")
    check_lengths(model.config, inputs["input_ids"].shape[1], max_new_tokens)
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    output = model.generate(
        **inputs, max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=pad_token_id, **generate_kwargs
    )
    if not model.config.is_encoder_decoder:
        output = output[:, inputs["input_ids"].shape[1] :]
    return tokenizer.decode(output[0], skip_special_tokens=True)


__all__ = ["check_lengths", "generate_text", "load_packed_tokenizer"]
