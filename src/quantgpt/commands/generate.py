"""`quantgpt generate PACKED --prompt TEXT`: decode with a packed low-bit model."""

from __future__ import annotations

import argparse

import torch

from ..export.generation import generate_text, load_packed_tokenizer
from ..export.runtime import load_packed

NAME = "generate"
HELP = "generate text with a packed low-bit model (written by quantgpt export)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("packed", metavar="PACKED", help="a packed model directory")
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


def run(args: argparse.Namespace) -> int:
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens={args.max_new_tokens} is not allowed: use an integer >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = load_packed(args.packed)
    tokenizer = load_packed_tokenizer(args.tokenizer or args.packed, model.config.model_type)
    options = {
        key: value
        for key, value in (("temperature", args.temperature), ("top_k", args.top_k), ("top_p", args.top_p), ("num_beams", args.num_beams))
        if value is not None
    }
    text = generate_text(model, tokenizer, args.prompt, args.max_new_tokens, args.do_sample, **options)
    print(text if model.config.is_encoder_decoder else args.prompt + text)
    return 0
