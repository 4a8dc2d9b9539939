"""What the llama.cpp tests share: llama-cpp-python itself (a failure in CI, a skip elsewhere), the
llama.cpp source it was built from (its vocabulary test files, its converter's table), and the
comparison of a GGUF file's next-token distributions with the quantized model's."""

from __future__ import annotations

import ast
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
# `make test` unpacks the llama-cpp-python source distribution here (the Makefile's LLAMA_CPP_SRC).
LLAMA_CPP_SOURCE = Path(
    os.environ.get("QUANTGPT_LLAMA_CPP_SOURCE", REPO_ROOT / ".venv" / "src" / "llama_cpp_python-0.3.36" / "vendor" / "llama.cpp")
)
MAX_KL, MIN_TOP1, MAX_PERPLEXITY_GAP = 1e-3, 0.95, 0.02


def require(what: str, available: bool, hint: str) -> None:
    """In CI (env CI set) a missing piece fails the test; locally it skips."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing in CI: {hint}")
    pytest.skip(f"{what} is not installed: {hint}")


def llama_cpp_module():
    try:
        import llama_cpp
    except ModuleNotFoundError:
        require("llama-cpp-python", False, "`make test` installs the .[gguf] extra")
    return llama_cpp


def llama_cpp_source() -> Path:
    require("llama.cpp's source", (LLAMA_CPP_SOURCE / "models").is_dir(), "`make test` unpacks llama-cpp-python's sdist into .venv/src")
    return LLAMA_CPP_SOURCE


def vocab_tests(vocab_file: Path) -> list[tuple[str, list[int]]]:
    """The (text, ids) pairs of a `ggml-vocab-*.gguf`'s `.inp` / `.out` files, split as llama.cpp's
    tests/test-tokenizer-0.cpp splits them."""
    raw = Path(f"{vocab_file}.inp").read_text(encoding="utf-8")
    separator, texts, position = "\n__ggml_vocab_test__\n", [], 0
    while position < len(raw):
        end = raw.find(separator, position)
        if end == -1:
            texts.append(raw[position:])
            break
        texts.append(raw[position:end])
        position = end + len(separator)
    outputs = Path(f"{vocab_file}.out").read_text(encoding="utf-8").split("\n")[: len(texts)]
    return [(text, [int(token) for token in line.split()]) for text, line in zip(texts, outputs, strict=True)]


def read_pre_tokenizer_table(converter_base: Path) -> dict:
    """The probe text and hash -> name table of llama.cpp's converter (`get_vocab_base_pre` in
    conversion/base.py), as quantgpt's llama_cpp_pre_tokenizers.json stores them."""
    text = converter_base.read_text(encoding="utf-8")
    body = text[text.index("def get_vocab_base_pre") : text.index("if res is None", text.index("def get_vocab_base_pre"))]
    probe = ast.literal_eval(re.search(r"chktxt = ('.*')\n", body).group(1))
    table = {}
    for digest, comment, name in re.findall(r'if chkhsh == "([0-9a-f]{64})":\s*\n((?:\s*#.*\n)*)\s*res = "([^"]+)"', body):
        ref = re.search(r"ref:\s*(\S+)", comment)
        table[digest] = {"pre": name, "ref": ref.group(1) if ref else None}
    return {"probe_text": probe, "by_hash": table}


def compare_with_llama_cpp(llm, model, blocks: torch.Tensor) -> tuple[float, float, float]:
    """Mean KL(ours || llama.cpp), top-1 agreement and llama.cpp's perplexity over `blocks`
    (blocks x tokens of ids; each block scored in a fresh context, every token but the first)."""
    from quantgpt.export.gguf_runtime import next_token_logits

    with torch.no_grad():
        ours = torch.log_softmax(model(blocks).logits.double(), dim=-1)
    theirs = torch.log_softmax(
        torch.from_numpy(np.stack([next_token_logits(llm, block.tolist()) for block in blocks])).double(), dim=-1
    )
    kl = (ours.exp() * (ours - theirs)).sum(-1).mean().item()
    top1 = (ours.argmax(-1) == theirs.argmax(-1)).double().mean().item()
    targets = blocks[:, 1:]
    nll = -theirs[:, :-1].gather(-1, targets.unsqueeze(-1)).sum()
    return kl, top1, math.exp(nll / targets.numel())
