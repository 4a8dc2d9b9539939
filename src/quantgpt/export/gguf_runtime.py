"""Running a GGUF file written by `export_gguf` with llama.cpp, through llama-cpp-python.

    llm = load_gguf("q228.gguf", threads=1)
    generate_gguf_text(llm, "The tower is", max_new_tokens=20)    # greedy, as `quantgpt generate`
    next_token_logits(llm, token_ids)                              # (tokens, vocabulary), for tests

llama-cpp-python is the `quantgpt[gguf]` extra; without it these raise `MissingLlamaCppError`
saying how to install it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError, MissingInputError, UsageError
from ..model_sources import is_gguf_file

INSTALL_HINT = "pip install 'quantgpt[gguf]' (it builds llama.cpp; CMAKE_ARGS=\"-DLLAVA_BUILD=OFF\" skips its vision part)"
# Transformers' sampling defaults, so that `--do-sample` means the same for both runtimes.
HF_TOP_K, HF_TOP_P, HF_TEMPERATURE = 50, 1.0, 1.0


class MissingLlamaCppError(UsageError, ModuleNotFoundError):
    """llama-cpp-python (the `quantgpt[gguf]` extra) is not installed."""


def llama_cpp_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


def _silence_llama_cpp_log() -> None:
    """llama.cpp's own log off (QUANTGPT_DEBUG=1 keeps it): llama-cpp-python's callback, even with
    verbose=False, prints continued lines and some warnings (a context longer than the model's
    positions) to stderr, before the one line a user error gets. Its failures reach us as
    exceptions, which say what went wrong."""
    import llama_cpp

    if os.environ.get("QUANTGPT_DEBUG") or getattr(_silence_llama_cpp_log, "callback", None) is not None:
        return
    _silence_llama_cpp_log.callback = llama_cpp.llama_log_callback(lambda level, text, user_data: None)  # kept alive
    llama_cpp.llama_log_set(_silence_llama_cpp_log.callback, ctypes.c_void_p(0))


def _llama_class() -> Any:
    try:
        from llama_cpp import Llama
    except ModuleNotFoundError:
        raise MissingLlamaCppError(f"running a .gguf file needs llama.cpp's Python binding: {INSTALL_HINT}") from None
    _silence_llama_cpp_log()
    return Llama


@contextlib.contextmanager
def _weights_not_repacked() -> Iterator[None]:
    """Load without llama.cpp's extra CPU buffer types (its `--no-repack`).

    With them, llama.cpp as built by llama-cpp-python 0.3.36 dies of SIGSEGV on SmolLM2-135M (width
    576): computing the logits of every position (its Q4_1 file as ours), and evaluating a prompt
    of our Q4_0 export (measured on this AVX-512/AMX machine). llama-cpp-python has no flag for it,
    so its default model parameters are wrapped while the model loads.
    """
    import llama_cpp

    module = llama_cpp.llama_cpp
    default = module.llama_model_default_params

    def without_extra_buffers():
        params = default()
        params.use_extra_bufts = False
        return params

    module.llama_model_default_params = without_extra_buffers
    try:
        yield
    finally:
        module.llama_model_default_params = default


def load_gguf(path: str | Path, *, threads: int | None = None, n_ctx: int = 0, logits_all: bool = False) -> Any:
    """A `llama_cpp.Llama` over the file; `n_ctx=0` takes the model's context length.

    `logits_all=True` keeps the logits of every evaluated position (for scoring), not only the last.
    The weights are not repacked (see `_weights_not_repacked`).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise MissingInputError(f"{path}: no such file")
    if path.is_dir():
        raise InputFileError(f"{path}: a directory, not a GGUF file (a packed model directory does not end in .gguf)")
    if not is_gguf_file(path):
        raise InputFileError(f"{path}: not a GGUF file (write one with quantgpt export RUN OUT.gguf --format gguf)")
    Llama = _llama_class()
    threads = threads or os.cpu_count() or 1
    try:
        with _weights_not_repacked():
            return Llama(
                model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                logits_all=logits_all, verbose=False,
            )
    except ValueError as error:  # llama-cpp-python's "Failed to load model from file"
        raise InputFileError(f"{path}: llama.cpp cannot load it ({str(error).splitlines()[0]})") from None


def context_length(llm: Any) -> int:
    """The positions the model was trained with (GPT-2's position embedding ends there)."""
    return int(llm._model.n_ctx_train())  # the high-level Llama does not expose it


def tokenize(llm: Any, text: str) -> list[int]:
    """Token ids of `text` as Transformers' tokenizer gives them: no BOS, special tokens parsed."""
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def next_token_logits(llm: Any, tokens: list[int]) -> np.ndarray:
    """Logits (len(tokens), vocabulary) of each position's next token, from a fresh context.

    The model must be loaded with `logits_all=True`.
    """
    if len(tokens) > min(llm.n_ctx(), context_length(llm)):
        raise UsageError(f"{len(tokens)} tokens do not fit the model's context of {context_length(llm)}")
    llm.reset()
    llm.eval(tokens)
    return np.array(llm.scores[: len(tokens)], dtype=np.float32)


def generate_gguf_text(
    llm: Any,
    prompt: str,
    max_new_tokens: int = 32,
    do_sample: bool = False,
    *,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
) -> str:
    """The text llama.cpp generates after `prompt`: greedy, or sampled with Transformers' defaults
    (temperature 1, top-k 50, top-p 1) where a setting is not given. Stops at the end-of-text token."""
    tokens = tokenize(llm, prompt)
    limit = min(llm.n_ctx(), context_length(llm))
    if not tokens:
        raise UsageError("--prompt is empty: give at least one token of text")
    if len(tokens) + max_new_tokens > limit:
        raise UsageError(
            f"the prompt's {len(tokens)} tokens plus --max-new-tokens={max_new_tokens} exceed the model's context of {limit}"
        )
    if do_sample:
        llm.set_seed(seed % 2**32)  # llama.cpp's seed is 32 bits
        options = {
            "temp": HF_TEMPERATURE if temperature is None else temperature,
            "top_k": HF_TOP_K if top_k is None else top_k,
            "top_p": HF_TOP_P if top_p is None else top_p,
        }
    else:
        options = {"temp": 0.0, "top_k": 1, "top_p": 1.0}
    generated: list[int] = []
    for token in llm.generate(tokens, min_p=0.0, repeat_penalty=1.0, reset=True, **options):
        if token == llm.token_eos():
            break
        generated.append(token)
        if len(generated) == max_new_tokens:
            break
    return llm.detokenize(generated, prev_tokens=tokens).decode("utf-8", errors="replace")


__all__ = [
    "MissingLlamaCppError",
    "context_length",
    "generate_gguf_text",
    "is_gguf_file",
    "llama_cpp_available",
    "load_gguf",
    "next_token_logits",
    "tokenize",
]
