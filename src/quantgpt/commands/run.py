"""`quantgpt run`: the main job. With no argument: the testbed teacher (fine-tuned from the shipped
pretrained checkpoint if not cached), the untrained rows (RTN, QuantGPT's quantizer at gamma = 1),
QuantGPT, PACT (the paper's start and from the weights), LSQ and LAQ at 2-2-8, WikiText-2 and PTB
test perplexities, Table 1 and figures in results/."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .. import settings
from ..errors import OutputPathError
from ..testbed.arguments import add_common_arguments, set_threads
from ..testbed.job import TestbedJob, run_testbed
from ..testbed.recipe import RECIPES, QATRecipe, TeacherRecipe

NAME = "run"
HELP = "the main job: teacher, untrained rows and the paper's methods at 2-2-8, WikiText-2 / PTB test, Table 1 and figures under results/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--out", default="results", help="output folder (default results)")
    parser.add_argument("--runs", help="folder of the run directories (default: <out>/runs)")
    parser.add_argument("--no-figures", dest="figures", action="store_false", help="skip the PNG figures")
    settings.add_arguments(parser, TestbedJob, title="job")  # --methods --bits --test-sets --peers --reference-steps --seeds
    # A recipe flag not given keeps the value of the named recipe (--recipe).
    settings.add_arguments(
        parser, TeacherRecipe, title="teacher recipe (not given: the --recipe's value; defaults: the default recipe's)", inherit=True
    )
    settings.add_arguments(
        parser, QATRecipe, title="quantization-aware training (not given: the --recipe's value)", prefix="qat_", inherit=True
    )


def check_output_folder(flag: str, value: str | None) -> None:
    """Refuse a folder the job writes that lies under a file, naming its own flag (the training
    runs inside would otherwise report their --output-dir, a flag this command does not have)."""
    if value is None:
        return
    path = Path(value).expanduser()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputPathError(f"{flag} {value}: {existing} is a file, not a directory")


def run(args: argparse.Namespace) -> int:
    teacher_recipe, qat_recipe = RECIPES[args.recipe]
    job = settings.from_args(
        TestbedJob,
        args,
        teacher=settings.from_args(TeacherRecipe, args, base=teacher_recipe),
        qat=settings.from_args(QATRecipe, args, prefix="qat_", base=qat_recipe),
    )
    set_threads(args.threads)
    for flag, value in (("--out", args.out), ("--runs", args.runs), ("--cache", args.cache)):
        check_output_folder(flag, value)
    command = "quantgpt " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["run"] else "quantgpt run"
    run_testbed(job, args.out, args.cache, args.data_dir, args.progress, command=command, figures=args.figures, runs_dir=args.runs,
                pretrained_root=args.pretrained_root)
    return 0
