"""`quantgpt pretrain`: the testbed's small teacher, trained from scratch on real text and cached;
or its pretrained checkpoint alone (`--pretrained-only`), or a fresh build of that checkpoint
compared with the shipped one (`--reproduce`)."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ..jsonio import dumps_json
from .. import settings
from ..testbed.arguments import add_common_arguments, set_threads
from ..testbed.pretrained import PRETRAINED_SUMMARY, WEIGHTS_FILE, build_pretrained, get_pretrained, pretrained_folder, read_pretrained
from ..testbed.recipe import RECIPES, TeacherRecipe
from ..testbed.teacher import get_teacher, teacher_folder

NAME = "pretrain"
HELP = "train (or find in the cache) the testbed's small GPT-2 teacher: BPE tokenizer, pretraining, fine-tuning"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--print-dir", action="store_true", help="print only the cache folder this recipe would use")
    stage = parser.add_mutually_exclusive_group()
    stage.add_argument("--pretrained-only", action="store_true", help="only the pretrained checkpoint (shipped, cached or trained now); print its folder and summary")
    stage.add_argument(
        "--reproduce", action="store_true",
        help="train the pretrained checkpoint again into the cache and compare its weights with the shipped one (exit 0 equal, 1 different)",
    )
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
    if args.reproduce:
        return reproduce(recipe, args)
    if args.pretrained_only:
        pretrained = get_pretrained(recipe, args.cache, args.pretrained_root, args.data_dir, args.progress)
        print(dumps_json({"folder": str(pretrained.folder), "source": pretrained.source, **pretrained.summary}, indent=2))
        return 0
    teacher = get_teacher(recipe, args.cache, args.data_dir, args.progress, pretrained_root=args.pretrained_root)
    print(dumps_json({"teacher": str(teacher.model_dir), "cached": teacher.cached, **teacher.summary}, indent=2))
    return 0


def reproduce(recipe: TeacherRecipe, args: argparse.Namespace) -> int:
    """Builds the pretrained checkpoint afresh in the cache and prints whether its weights equal the
    shipped ones: 0 when equal, 1 when different."""
    shipped = pretrained_folder(recipe, args.pretrained_root)
    if not (shipped / PRETRAINED_SUMMARY).is_file():
        raise UsageError(f"--reproduce: nothing is shipped for this recipe ({shipped / PRETRAINED_SUMMARY} does not exist)")
    expected = read_pretrained(shipped, recipe.pretrain_key(), shipped=True)["sha256"][WEIGHTS_FILE]
    built = build_pretrained(recipe, args.cache, args.data_dir, args.progress, print).summary["sha256"][WEIGHTS_FILE]
    print(f"{WEIGHTS_FILE}: {'equal' if built == expected else 'different'} (rebuilt {built}, shipped {expected})")
    return 0 if built == expected else 1
