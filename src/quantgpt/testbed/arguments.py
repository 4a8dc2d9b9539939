"""Command-line flags of the testbed. Its recipes' flags come from `quantgpt.settings`, one per
field (`--finetune-steps 300`, `--qat-steps 50`); a flag not given keeps the named recipe's value
(`--recipe`), and YAML `--config` files set any of them by field name (`finetune_steps`,
`qat_steps`)."""

from __future__ import annotations

import argparse

import torch

from .recipe import RECIPES, parse_rates  # noqa: F401  (parse_rates: the --qat-method-quantizer-learning-rates text)
from ..errors import UsageError
from ..validators import is_int


RECIPE_HELP = "named settings (default: default; scratch: the earlier teacher trained from nothing; tiny: seconds, for smoke tests)"


def add_common_arguments(parser: argparse.ArgumentParser, recipes: dict = RECIPES, recipe_help: str = RECIPE_HELP) -> None:
    """The flags every testbed command and benchmark shares; `recipes` are the `--recipe` choices."""
    parser.add_argument("--recipe", choices=sorted(recipes), default="default", help=recipe_help)
    parser.add_argument("--cache", default="cache", help="folder of cached teachers (default cache)")
    parser.add_argument("--pretrained-root", default="pretrained", metavar="DIR", help="shipped pretrained checkpoints (default pretrained)")
    parser.add_argument("--data-dir", default="../shared/data", help="the real data (default ../shared/data)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def set_threads(threads: int) -> None:
    if not is_int(threads) or threads < 1:
        raise UsageError(f"--threads {threads} is not allowed: use an integer >= 1")
    torch.set_num_threads(threads)
