"""`quantgpt export RUN_DIR OUT`: write a quantized model as a packed low-bit model directory."""

from __future__ import annotations

import argparse
import json

from ..export.exporter import export_packed

NAME = "export"
HELP = "pack a quantized model (a save_pretrained directory or a training run with best/) into low-bit codes"

MIB = 2**20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a quantized model saved with save_pretrained, or a run directory holding best/")
    parser.add_argument("out", metavar="OUT", help="the packed model directory to write")
    parser.add_argument(
        "--position-bits",
        type=int,
        choices=range(2, 9),
        metavar="{2..8}",
        help="store the position embedding at this many bits (row-wise round-to-nearest; beyond the paper, "
        "which keeps it in full precision); default fp16",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a packed model already in OUT")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    result = export_packed(args.run_dir, args.out, position_bits=args.position_bits, overwrite=args.overwrite)
    if args.json:
        print(
            json.dumps(
                {
                    "directory": str(result.directory),
                    "packed_bytes": result.packed_bytes,
                    "fp32_bytes": result.fp32_bytes,
                    "ratio": result.ratio,
                }
            )
        )
    else:
        print(f"packed model written to {result.directory}")
        print(f"  packed     {result.packed_bytes / MIB:10.2f} MiB (model.safetensors + index)")
        print(f"  fp32       {result.fp32_bytes / MIB:10.2f} MiB (4 bytes a parameter, tied once)")
        print(f"  ratio      {result.ratio:10.1f}x")
    return 0
