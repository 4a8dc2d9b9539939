"""`quantgpt pretrain`: the testbed's small teacher, trained from scratch on real text and cached."""

from __future__ import annotations

import argparse

from ..jsonio import dumps_json
from .. import settings
from ..testbed.arguments import add_common_arguments, set_threads
from ..testbed.recipe import RECIPES, TeacherRecipe
from ..testbed.teacher import get_teacher, teacher_folder

NAME = "pretrain"
HELP = "train (or find in the cache) the testbed's small GPT-2 teacher: BPE tokenizer, pretraining, fine-tuning"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--print-dir", action="store_true", help="print only the cache folder this recipe would use")
    # A recipe flag not given keeps the value of the named recipe (--recipe).
    settings.add_arguments(
        parser, TeacherRecipe, title="teacher recipe (not given: the --recipe's value; defaults: the default recipe's)", inherit=True
    )


def run(args: argparse.Namespace) -> int:
    recipe = settings.from_args(TeacherRecipe, args, base=RECIPES[args.recipe][0])
    if args.print_dir:
        print(teacher_folder(recipe, args.cache))
        return 0
    set_threads(args.threads)
    teacher = get_teacher(recipe, args.cache, args.data_dir, args.progress)
    print(dumps_json({"teacher": str(teacher.model_dir), "cached": teacher.cached, **teacher.summary}, indent=2))
    return 0
