"""`quantgpt generate PACKED --prompt TEXT`: decode with a packed low-bit model, or a .gguf file through llama.cpp."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..errors import MissingInputError, UsageError
from ..export.generation import generate_text, load_packed_tokenizer
from ..export.gguf_runtime import generate_gguf_text, is_gguf_file, load_gguf
from ..export.packed_format import INDEX_FILE
from ..export.runtime import load_packed

NAME = "generate"
HELP = "generate text with a packed low-bit model (written by quantgpt export)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("packed", metavar="PACKED", help="a packed model directory, or a .gguf file (run by llama.cpp)")
    parser.add_argument("--prompt", required=True, help="the prompt (for BART: the source text)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tokens to generate (default 32)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--do-sample", dest="do_sample", action="store_true", help="sample from the distribution")
    mode.add_argument("--greedy", dest="do_sample", action="store_false", help="greedy decoding (default)")
    parser.set_defaults(do_sample=False)
    parser.add_argument("--temperature", type=float, help="sampling temperature")
    parser.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    parser.add_argument("--top-p", type=float, help="nucleus sampling: the smallest set with this probability")
    parser.add_argument("--num-beams", type=int, help="beam search width (the paper uses 6 for XSum)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for sampling (default 0)")
    parser.add_argument("--tokenizer", help="tokenizer directory, when PACKED holds none (e.g. ../shared/data/gpt2-tokenizer)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads")


MAX_SEED = 2**63 - 1


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse bad flag values before any model loads (the prompt's length is checked once the
    tokenizer is there, before decoding starts)."""
    prompt = args.prompt
    if not isinstance(prompt, str) or not prompt:
        raise UsageError("--prompt is empty: give the text to continue (for BART: the source text)")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as error:
        raise UsageError(f"--prompt is not valid UTF-8 text (at character {error.start}): pass it as UTF-8") from None
    for flag, value, low in (("--max-new-tokens", args.max_new_tokens, 1), ("--num-beams", args.num_beams, 1),
                             ("--top-k", args.top_k, 1), ("--threads", args.threads, 1), ("--seed", args.seed, 0)):
        if value is not None and not low <= value <= MAX_SEED:
            allowed = f"an integer >= {low}" if value < low else f"at most {MAX_SEED}"
            raise UsageError(f"{flag} {value} is not allowed: use {allowed}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UsageError(f"--top-p {args.top_p} is not allowed: use a probability in (0, 1]")
    if args.temperature is not None and not (0 < args.temperature < float("inf")):
        raise UsageError(f"--temperature {args.temperature} is not allowed: use a number > 0")
    if not args.do_sample:
        given = [flag for flag, value in (("--temperature", args.temperature), ("--top-k", args.top_k), ("--top-p", args.top_p))
                 if value is not None]
        if given:
            raise UsageError(f"{given[0]} applies to sampling only: add --do-sample")


def _run_gguf(args: argparse.Namespace) -> int:
    """A .gguf file runs in llama.cpp (the `quantgpt[gguf]` extra), which reads its own tokenizer."""
    for flag, value in (("--num-beams", args.num_beams), ("--tokenizer", args.tokenizer)):
        if value is not None:
            raise UsageError(f"{flag} does not apply to a .gguf file (llama.cpp samples; the file holds its tokenizer)")
    llm = load_gguf(args.packed, threads=args.threads)
    try:
        text = generate_gguf_text(
            llm, args.prompt, args.max_new_tokens, args.do_sample,
            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
        )
    finally:
        llm.close()
    print(args.prompt + text)
    return 0


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    if str(args.packed).endswith(".gguf") or is_gguf_file(args.packed):
        return _run_gguf(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    packed = Path(args.packed)
    if not packed.exists():
        raise MissingInputError(f"{packed}: no such packed model directory or .gguf file")
    if (packed / "config.json").is_file() and not (packed / INDEX_FILE).is_file():
        raise UsageError(f"{packed} is a save_pretrained model, not a packed one: write one with quantgpt export {packed} OUT")
    model = load_packed(packed)
    tokenizer = load_packed_tokenizer(args.tokenizer or args.packed, model.config.model_type)
    options = {
        key: value
        for key, value in (("temperature", args.temperature), ("top_k", args.top_k), ("top_p", args.top_p), ("num_beams", args.num_beams))
        if value is not None
    }
    text = generate_text(model, tokenizer, args.prompt, args.max_new_tokens, args.do_sample, **options)
    print(text if model.config.is_encoder_decoder else args.prompt + text)
    return 0
