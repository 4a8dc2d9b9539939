"""The paper's Table 3 (QuantBART on XSum) on the CPU testbed: ROUGE-1/2/L of each method over QAT
seeds, with the untrained rows, beside the full-precision BART.

    python benchmarks/table3.py --bits 2-2-8 --seeds 1   # the 2-2-8 rows, one seed a row
    python benchmarks/table3.py                          # 8-8-8, 4-4-8 and 2-2-8, 3 seeds
    python benchmarks/table3.py --recipe tiny            # seconds: a smoke test

The teacher (testbed/summaries.py): a BART of 3 + 3 layers, width 256, pretrained with BART's
denoising objective on ../shared/data/corpus/nltk-2008 (1,500 steps, 31 to 47 minutes on 2 cores
in three runs, cached under cache/), fine-tuned on the first 850 of the 1,000 local XSum pairs,
selected by ROUGE-2 on the next 50; every row is scored on the last 100 by beam search (the 2-2-8
table, 3 seeds: about 2 hours with the teacher). Each QAT run keeps its final
step (one evaluation on testbed-select: beam search costs about as much as 50 steps). Writes
docs/results/xsum/table3.md and .json; the run directories go to runs/table3/.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from quantgpt.cli import OneLineParser, exit_status
from quantgpt.testbed.arguments import add_common_arguments, set_threads
from quantgpt.testbed.job import DEFAULT_METHODS, TestbedJob, run_testbed
from quantgpt.testbed.recipe import BART_RECIPES

GRID_BITS = ("8-8-8", "4-4-8", "2-2-8")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", nargs="+", default=list(GRID_BITS), help="bit widths (default 8-8-8 4-4-8 2-2-8)")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), help="methods and variants (default: the main rows)")
    parser.add_argument("--seeds", type=int, default=3, help="QAT seeds of each trained row (default 3)")
    parser.add_argument("--out", default="docs/results/xsum", help="folder of the table (default docs/results/xsum)")
    parser.add_argument("--runs", default="runs/table3", help="folder of the run directories (default runs/table3)")
    add_common_arguments(parser, BART_RECIPES, "BART and QAT settings (tiny: seconds, for smoke tests)")
    args = parser.parse_args(argv)
    return exit_status(lambda: run_grid(args, argv))


def run_grid(args: argparse.Namespace, argv: list[str] | None) -> int:
    set_threads(args.threads)
    teacher, qat = BART_RECIPES[args.recipe]
    job = TestbedJob(teacher=teacher, qat=qat, methods=tuple(args.methods), bits=tuple(args.bits), task="xsum", seeds=args.seeds)
    command = "python benchmarks/table3.py" + "".join(f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv))
    run_testbed(
        job, out_dir=args.out, cache_root=args.cache, data_dir=args.data_dir, progress=args.progress, command=command,
        table_stem="table3", runs_dir=args.runs, pretrained_root=args.pretrained_root,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
