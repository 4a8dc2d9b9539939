"""`quantgpt run`: the main job. With no argument: the testbed teacher (trained if not cached), QuantGPT,
PACT, LSQ and LAQ at 2-2-8, WikiText-2 and PTB test perplexities, Table 1 and figures in results/."""

from __future__ import annotations

import argparse
import shlex
import sys

from ..testbed.arguments import add_common_arguments, add_recipe_arguments, recipe_from_args, set_threads
from ..testbed.job import PAPER_METHODS, TEST_SETS, TestbedJob, run_testbed
from ..testbed.recipe import RECIPES, QATRecipe, TeacherRecipe

NAME = "run"
HELP = "the main job: teacher, four methods at 2-2-8, WikiText-2 / PTB test, Table 1 and figures under results/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--out", default="results", help="output folder (default results)")
    parser.add_argument("--runs", help="folder of the run directories (default: <out>/runs)")
    parser.add_argument("--methods", nargs="+", default=list(PAPER_METHODS), help="methods (default: quantgpt pact lsq laq)")
    parser.add_argument("--bits", nargs="+", default=["2-2-8"], help="W-E-A bit widths (default 2-2-8)")
    parser.add_argument("--test-sets", nargs="+", default=list(TEST_SETS), help="test sets (default wikitext-2 ptb)")
    parser.add_argument("--peers", nargs="*", default=[], help="other libraries' quantizers: torchao")
    parser.add_argument("--reference-steps", type=int, default=0, help="steps of full-precision distillation timed as reference")
    parser.add_argument("--no-figures", dest="figures", action="store_false", help="skip the PNG figures")
    add_recipe_arguments(parser, TeacherRecipe, title="teacher recipe")
    add_recipe_arguments(parser, QATRecipe, prefix="qat-", title="quantization-aware training")


def run(args: argparse.Namespace) -> int:
    teacher_recipe, qat_recipe = RECIPES[args.recipe]
    job = TestbedJob(
        teacher=recipe_from_args(args, teacher_recipe),
        qat=recipe_from_args(args, qat_recipe, prefix="qat_"),
        methods=tuple(args.methods),
        bits=tuple(args.bits),
        test_sets=tuple(args.test_sets),
        peers=tuple(args.peers),
        reference_steps=args.reference_steps,
    )
    set_threads(args.threads)
    command = "quantgpt " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["run"] else "quantgpt run"
    run_testbed(job, args.out, args.cache, args.data_dir, args.progress, command=command, figures=args.figures, runs_dir=args.runs)
    return 0
