"""`quantgpt size`: the model size in the paper's accounting, from a configuration alone."""

from __future__ import annotations

import argparse

from ..model_configs import KNOWN_CONFIGS, load_model_config
from ..size import ACCOUNTINGS, model_size

NAME = "size"
HELP = "print fp32 and quantized model size (MiB) and their ratio, from a model configuration alone"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-config", required=True, help=f"{' or '.join(KNOWN_CONFIGS)} (known offline), a JSON config file (any name) or a directory holding config.json"
    )
    parser.add_argument("--bits", required=True, help="W-E-A bit widths, e.g. 2-2-8")
    parser.add_argument("--accounting", choices=ACCOUNTINGS, default="paper", help="paper (default) or exact")
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def run(args: argparse.Namespace) -> int:
    report = model_size(load_model_config(args.model_config), args.bits, args.accounting)
    if args.json:
        print(report.to_json())
    else:
        print(f"model {args.model_config}, bits {args.bits}, {args.accounting} accounting")
        print(f"  fp32       {report.fp32_mib:10.1f} MiB")
        print(f"  quantized  {report.quantized_mib:10.1f} MiB")
        print(f"  ratio      {report.ratio:10.1f}x")
    return 0
