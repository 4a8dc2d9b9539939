"""`quantgpt export RUN_DIR OUT`: write a quantized model as a packed low-bit model directory, or as a
GGUF file for llama.cpp (`--format gguf`)."""

from __future__ import annotations

import argparse
import json

from ..errors import UsageError
from ..export.exporter import export_packed
from ..export.gguf_writer import DEFAULT_TERNARY_TYPE, TERNARY_TYPES, export_gguf

NAME = "export"
HELP = "pack a quantized model (a save_pretrained directory or a training run with best/) into low-bit codes"

MIB = 2**20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a quantized model saved with save_pretrained, or a run directory holding best/")
    parser.add_argument("out", metavar="OUT", help="the packed model directory to write (with --format gguf: the .gguf file)")
    parser.add_argument(
        "--position-bits",
        type=int,
        choices=range(2, 9),
        metavar="{2..8}",
        help="store the position embedding at this many bits (row-wise round-to-nearest; beyond the paper, "
        "which keeps it in full precision); default fp16",
    )
    parser.add_argument(
        "--format",
        choices=("packed", "gguf"),
        default="packed",
        help="packed: a directory for quantgpt's runtime (default); gguf: one .gguf file for llama.cpp, "
        "the same codes and fp16 scales (pip install 'quantgpt[gguf]')",
    )
    parser.add_argument(
        "--ternary-type",
        choices=TERNARY_TYPES,
        help=f"GGUF type of 2-bit weights: tq2_0 (fastest in llama.cpp) or tq1_0 (smallest); default {DEFAULT_TERNARY_TYPE}",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a packed model (or GGUF file) already in OUT")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _run_gguf(args: argparse.Namespace) -> int:
    result = export_gguf(
        args.run_dir,
        args.out,
        ternary_type=args.ternary_type or DEFAULT_TERNARY_TYPE,
        position_bits=args.position_bits,
        overwrite=args.overwrite,
    )
    summary = {"file": str(result.path), "file_bytes": result.file_bytes, "fp32_bytes": result.fp32_bytes, "ratio": result.ratio}
    if args.json:
        print(json.dumps({**summary, "tensor_types": result.tensor_types}))
        return 0
    print(f"GGUF file written to {result.path} (run it with quantgpt generate {result.path} --prompt ...)")
    for kind in sorted(set(result.tensor_types.values())):
        names = [name for name, tensor_type in result.tensor_types.items() if tensor_type == kind]
        shown = ", ".join(names[:3]) + (f", ... ({len(names)} tensors)" if len(names) > 3 else "")
        print(f"  {kind:10s} {shown}")
    print(f"  file       {result.file_bytes / MIB:10.2f} MiB")
    print(f"  fp32       {result.fp32_bytes / MIB:10.2f} MiB (4 bytes a parameter, tied once)")
    print(f"  ratio      {result.ratio:10.1f}x")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.format == "gguf":
        return _run_gguf(args)
    if args.ternary_type is not None:
        raise UsageError("--ternary-type applies to --format gguf only")
    if str(args.out).endswith(".gguf"):
        raise UsageError(f"{args.out} ends in .gguf but --format is packed (a directory): add --format gguf")
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
