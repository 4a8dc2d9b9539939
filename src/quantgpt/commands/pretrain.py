"""`quantgpt pretrain`: the testbed's small teacher, trained from scratch on real text and cached."""

from __future__ import annotations

import argparse

from ..jsonio import dumps_json
from ..testbed.arguments import add_common_arguments, add_recipe_arguments, recipe_from_args, set_threads
from ..testbed.recipe import RECIPES, TeacherRecipe
from ..testbed.teacher import get_teacher, teacher_folder

NAME = "pretrain"
HELP = "train (or find in the cache) the testbed's small GPT-2 teacher: BPE tokenizer, pretraining, fine-tuning"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--print-dir", action="store_true", help="print only the cache folder this recipe would use")
    add_recipe_arguments(parser, TeacherRecipe, title="teacher recipe")


def run(args: argparse.Namespace) -> int:
    recipe = recipe_from_args(args, RECIPES[args.recipe][0])
    if args.print_dir:
        print(teacher_folder(recipe, args.cache))
        return 0
    set_threads(args.threads)
    teacher = get_teacher(recipe, args.cache, args.data_dir, args.progress)
    print(dumps_json({"teacher": str(teacher.model_dir), "cached": teacher.cached, **teacher.summary}, indent=2))
    return 0
