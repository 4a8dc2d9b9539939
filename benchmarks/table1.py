"""The paper's Table 1 (and Table 7's ablations) on the CPU testbed: every method at every bit
width over QAT seeds, the untrained rows, a peer library, costs; language modelling or Persona-Chat.

    python benchmarks/table1.py --bits 2-2-8 --no-peer  # the 2-2-8 rows, 3 seeds (about 75 minutes on 2 cores)
    python benchmarks/table1.py                         # the whole grid (about 4 hours)
    python benchmarks/table1.py --seeds 1               # one seed a row
    python benchmarks/table1.py --task personachat --bits 2-2-8 --no-peer --seeds 1  # Persona-Chat hits@1

One teacher (the testbed's, cached under cache/ by `quantgpt pretrain`): the untrained rows (RTN,
QuantGPT's quantizer at gamma = 1), QuantGPT, PACT (the paper's start and from the weights), LSQ,
LAQ and QuantGPT's two Table 7 ablations at 8-8-8, 4-4-8 and 2-2-8, and torchao's QAT fake
quantizer at the same bit widths (`pip install torchao==0.18.0`; skipped with a note when it is
missing), all trained by the same loop and evaluated on WikiText-2 test and PTB test. Also timed:
plain full-precision logit distillation of the same model in the same process, the reference of
each method's step-time ratio; and each run's peak resident memory. The table marks which row beats
which by two standard errors and checks the paper's orderings at 2-2-8.

Writes docs/results/table1.md and table1.json (the command beside the table) and the figures under
docs/results/figures/<bits>/; the run directories go to runs/table1/.

Persona-Chat (`--task personachat`, testbed/dialogue.py): the double-head teacher fine-tuned from
the same pretrained checkpoint on the validation dialogues, hits@1 of 20 on the first 250 test
examples, no figures; its QAT runs keep their final step (one evaluation on testbed-select, not
one every 50 steps: each costs about 100 s). Writes docs/results/personachat/table1.md and .json.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys

from quantgpt.cli import OneLineParser, exit_status
from quantgpt.testbed.arguments import add_common_arguments, set_threads
from quantgpt.testbed.job import DEFAULT_METHODS, TestbedJob, run_testbed
from quantgpt.testbed.tasks import TESTBED_TASKS
from quantgpt.testbed.peers import TORCHAO_REQUIREMENT, torchao_available
from quantgpt.testbed.recipe import RECIPES

GRID_BITS = ("8-8-8", "4-4-8", "2-2-8")
GRID_METHODS = (*DEFAULT_METHODS, "quantgpt-logit", "quantgpt-pact-gradient")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TESTBED_TASKS), default="lm", help="lm (WikiText-2, PTB) or personachat")
    parser.add_argument("--bits", nargs="+", default=list(GRID_BITS), help="bit widths (default 8-8-8 4-4-8 2-2-8)")
    parser.add_argument("--methods", nargs="+", default=list(GRID_METHODS), help="methods and variants (default: all rows)")
    parser.add_argument("--seeds", type=int, default=3, help="QAT seeds of each trained row (default 3)")
    parser.add_argument("--no-peer", dest="peer", action="store_false", help="leave out torchao")
    parser.add_argument("--reference-steps", type=int, default=50, help="steps of full-precision distillation timed (default 50)")
    parser.add_argument("--out", help="folder of the table (default docs/results; personachat: docs/results/personachat)")
    parser.add_argument("--runs", help="folder of the run directories (default runs/table1; personachat: runs/table1-personachat)")
    add_common_arguments(parser, RECIPES, "teacher and QAT settings")
    args = parser.parse_args(argv)
    return exit_status(lambda: run_grid(args, argv))


def run_grid(args: argparse.Namespace, argv: list[str] | None) -> int:
    set_threads(args.threads)

    peers: tuple[str, ...] = ()
    if args.peer and torchao_available():
        peers = ("torchao",)
    elif args.peer:
        print(f"torchao is not installed: the peer rows are left out (pip install {TORCHAO_REQUIREMENT})", flush=True)
    teacher, qat = RECIPES[args.recipe]
    lm = args.task == "lm"
    if not lm:
        qat = dataclasses.replace(qat, eval_every=qat.steps)  # one selection evaluation a run (module docstring)
    out = args.out or ("docs/results" if lm else f"docs/results/{args.task}")
    runs = args.runs or ("runs/table1" if lm else f"runs/table1-{args.task}")
    job = TestbedJob(
        teacher=teacher, qat=qat, methods=tuple(args.methods), bits=tuple(args.bits), task=args.task, peers=peers,
        reference_steps=args.reference_steps if lm else 0, seeds=args.seeds,
    )
    command = "python benchmarks/table1.py" + "".join(f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv))
    run_testbed(
        job,
        out_dir=out,
        cache_root=args.cache,
        data_dir=args.data_dir,
        progress=args.progress,
        command=command,
        runs_dir=runs,
        figures_dir=f"{out}/figures",
        pretrained_root=args.pretrained_root,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
