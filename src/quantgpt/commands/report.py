"""`quantgpt report RUN_DIR...`: the paper's figures (2, 3, 4, 8) and training curves as PNG files."""

from __future__ import annotations

import argparse

from ..report import write_report

NAME = "report"
HELP = "draw Figures 2, 3, 4, 8 and training curves (PNG) from finetune/quantize run directories"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (quantize runs, optionally the teacher's)")
    parser.add_argument("--out", default="results/report", help="folder for the PNG files (default results/report)")
    parser.add_argument("--teacher", help="the full-precision model directory (default: the one the runs name)")
    parser.add_argument("--sentence", help="the sentence of Figure 3 (default: one from WikiText-2 test)")
    parser.add_argument("--data-dir", default="../shared/data", help="where WikiText-2 test is, for the default sentence")
    parser.add_argument("--module", help="the module of Figure 4 (default: the one with the largest max|w| / mean|w|)")


def run(args: argparse.Namespace) -> int:
    written = write_report(args.run_dirs, args.out, args.teacher, args.sentence, args.data_dir, args.module)
    for figure, path in written.items():
        print(f"{figure:12s} {path}")
    return 0
