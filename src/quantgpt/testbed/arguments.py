"""Command-line flags for the testbed's recipes, made from the dataclass fields themselves, so a new
recipe setting is a flag at once (`--finetune-steps 300`, `--qat-steps 50`) and YAML `--config`
files can set any of them."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

import torch

from .recipe import RECIPES
from ..errors import UsageError

R = TypeVar("R")


def parse_rates(text: str) -> dict[str, float]:
    """"quantgpt=0.02,lsq=0.001" -> {"quantgpt": 0.02, "lsq": 0.001} ("" -> {})."""
    rates = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: write METHOD=RATE, e.g. quantgpt=0.02") from None
    return rates


def _flag_type(annotation: Any) -> Any:
    text = str(annotation)
    if "dict" in text:
        return parse_rates
    if "float" in text:
        return float
    if "int" in text:
        return int
    return str


def add_recipe_arguments(parser: argparse.ArgumentParser, recipe_class: type, prefix: str = "", title: str = "") -> None:
    """One flag per field of `recipe_class` (`--<prefix><field-name>`), default None: not given
    means the value of the named recipe (`--recipe`)."""
    group = parser.add_argument_group(title or recipe_class.__name__)
    hints = typing.get_type_hints(recipe_class)
    for field in dataclasses.fields(recipe_class):
        flag = f"--{prefix}{field.name.replace('_', '-')}"
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        group.add_argument(flag, type=_flag_type(hints[field.name]), default=None, metavar=field.name.upper(),
                           help=f"(default: the recipe's; default recipe {default!r})")


def recipe_from_args(args: argparse.Namespace, base: R, prefix: str = "") -> R:
    """`base` with every field given on the command line replaced (validated by the recipe)."""
    changes = {}
    for field in dataclasses.fields(base):
        value = getattr(args, f"{prefix}{field.name}".replace("-", "_"), None)
        if value is not None:
            changes[field.name] = value
    return dataclasses.replace(base, **changes)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="default", help="named settings (default: default; tiny: seconds, for smoke tests)")
    parser.add_argument("--cache", default="cache", help="folder of cached teachers (default cache)")
    parser.add_argument("--data-dir", default="../shared/data", help="the real data (default ../shared/data)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def set_threads(threads: int) -> None:
    if threads < 1:
        raise UsageError(f"--threads {threads} is not allowed: use an integer >= 1")
    torch.set_num_threads(threads)
