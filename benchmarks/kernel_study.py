"""Time CPU low-bit matmul kernels on GPT-2-small linear shapes and print a table.

    python benchmarks/kernel_study.py                      # all shapes, rows 1 and 8, 1 thread
    python benchmarks/kernel_study.py --threads 2 --no-compile

For each weight shape (in_features x out_features) and number of activation rows it times one
linear layer ``y = x @ W^T`` with ``W = codes * scale`` (Eq. 1, docs/method.md#weight-quantizer), codes drawn uniformly from
the bit width's grid [-k, k], and prints the median time, the speed-up against fp32 ``F.linear``,
the weight bytes each format keeps in memory, and the largest error against a float64 reference
(relative to the reference's largest entry): ~1e-7 means the kernel reproduces ``x @ (c*scale)^T``
to fp32 rounding, ~1e-3 means bf16 rounding. The machine may be shared: each time is the median
of several blocked runs.

Activations (column "act"): ``fp32`` and ``bf16`` feed x as is; ``a8`` first quantizes x to 8-bit
symmetric per-tensor codes, as the model's activation quantizer does (docs/method.md#activation-quantizers, "W-E-8"),
and its error is measured against ``x_q @ W^T`` with that same ``x_q``, the product the quantized
model computes.

Kernels:
  F.linear        dense matmul on the dequantized weight (fp32 is the baseline).
  int8 w-only     torch._weight_int8pack_mm: int8 codes [N, K], one scale per output row.
  int4 w-only     aten._weight_int4pack_mm_for_cpu: nibbles q = c + 8 converted once into the
                  kernel's tiled layout by aten._convert_weight_to_int4pack_for_cpu (int32 [N, K]
                  in), scales-and-zeros [K/256, N, 2] with zero 0, so w = (q - 8) * scale exactly.
  int_mm a8       W8A8: x -> int8 codes, torch._int_mm(x_codes, codes.T) in int32 (exact), times
                  scale_x * scale_w. Codes of any width 2..8 fit int8, so it serves every width.
  unpack/call     ternary kept as the file's 1.6-bit bytes, unpacked every call with a 243 x 5 table.
  dequant eager   int8 codes converted and scaled every call, then fp32 F.linear.
  dequant compile the same function under torch.compile (inductor).
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

from quantgpt.export.packing import pack_ternary

# GPT-2 small (in_features, out_features): attention out-proj, fused qkv, MLP up, MLP down, LM head.
SHAPES = {
    "768x768": (768, 768),
    "768x2304": (768, 2304),
    "768x3072": (768, 3072),
    "3072x768": (3072, 768),
    "768x50257": (768, 50257),
}
INT4_GROUP = 256  # the largest group the CPU int4 kernel accepts; one scale per matrix fills them all
ACT_LEVELS = 127  # 8-bit symmetric activation codes
ACT_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16"}


@dataclass
class Kernel:
    """A prepared weight format: the call to time, its activation kind and resident weight bytes."""

    name: str
    bits: int
    act: str
    call: Callable[[torch.Tensor], torch.Tensor]
    weight_bytes: int


def ternary_table() -> torch.Tensor:
    """Row b holds the five codes byte b encodes (the pack_ternary layout): a 243 x 5 int8 table."""
    values = torch.arange(243, dtype=torch.int16).unsqueeze(1)
    powers = torch.tensor([1, 3, 9, 27, 81], dtype=torch.int16)
    return (torch.div(values, powers, rounding_mode="floor") % 3 - 1).to(torch.int8)


def quantize_activation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """8-bit symmetric per-tensor codes of x and their scale (the model's activation quantizer)."""
    scale = x.abs().amax().clamp_min(1e-12) / ACT_LEVELS
    return torch.round(x / scale).clamp_(-ACT_LEVELS, ACT_LEVELS).to(torch.int8), scale


def fake_quantize_activation(x: torch.Tensor) -> torch.Tensor:
    codes, scale = quantize_activation(x)
    return codes.double() * scale.double()


def int4_scales_and_zeros(scale: float, in_features: int, out_features: int, dtype: torch.dtype) -> torch.Tensor:
    """The kernel's [K / group, N, 2] table of (scale, zero); zero 0 keeps w = (q - 8) * scale."""
    table = torch.zeros(in_features // INT4_GROUP, out_features, 2, dtype=dtype)
    table[..., 0] = scale
    return table


def build_kernels(in_features: int, out_features: int, compile_fn: Callable | None) -> tuple[list[Kernel], dict]:
    """Every kernel for one weight shape, and the float64 weight each bit width stands for."""
    n, k = out_features, in_features
    generator = torch.Generator().manual_seed(k * 7 + n)
    levels = {8: 127, 4: 7, 2: 1}
    codes = {b: torch.randint(-q, q + 1, (n, k), generator=generator).to(torch.int8) for b, q in levels.items()}
    scales = {b: 0.02 / q for b, q in levels.items()}
    weights = {b: codes[b].double() * scales[b] for b in levels}
    fp32_weight, bf16_weight = weights[8].float(), weights[8].bfloat16()
    int8_bytes = n * k + 4 * n

    def int8_weight_only(bits: int, dtype: torch.dtype) -> Kernel:
        rows = torch.full((n,), scales[bits], dtype=dtype)
        return Kernel("int8 w-only", bits, ACT_NAMES[dtype],
                      lambda x: torch._weight_int8pack_mm(x.to(dtype), codes[bits], rows), int8_bytes)

    def int4_weight_only(bits: int, dtype: torch.dtype) -> Kernel:
        # The kernel wants N divisible by 16 (the LM head's 50257 is not): pad with zero codes
        # (nibble 8) and drop the padded outputs.
        padded = torch.nn.functional.pad(codes[bits].int() + 8, (0, 0, 0, (-n) % 16), value=8)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(padded, 2)
        table = int4_scales_and_zeros(scales[bits], k, padded.shape[0], dtype)

        def call(x: torch.Tensor) -> torch.Tensor:
            return torch.ops.aten._weight_int4pack_mm_for_cpu(x.to(dtype), packed, INT4_GROUP, table)[:, :n]

        resident = packed.numel() + table.numel() * table.element_size()
        return Kernel("int4 w-only", bits, ACT_NAMES[dtype], call, resident)

    def int_mm(bits: int) -> Kernel:
        weight_codes, weight_scale = codes[bits], torch.tensor(scales[bits])

        def call(x: torch.Tensor) -> torch.Tensor:
            x_codes, x_scale = quantize_activation(x)
            # codes.T is a column-major view of the [N, K] codes: the fast layout for _int_mm.
            return torch._int_mm(x_codes, weight_codes.T) * (x_scale * weight_scale)

        return Kernel("int_mm", bits, "a8", call, int8_bytes)

    ternary_bytes, lookup = pack_ternary(codes[2]), ternary_table()
    ternary_rows = torch.full((n,), scales[2], dtype=torch.bfloat16)

    def unpack_each_call(x: torch.Tensor) -> torch.Tensor:
        unpacked = lookup[ternary_bytes.long()].reshape(-1)[: n * k].reshape(n, k)
        return torch._weight_int8pack_mm(x.bfloat16(), unpacked, ternary_rows)

    scale8 = torch.tensor(scales[8])

    kernels = [
        Kernel("F.linear", 32, "fp32", lambda x: F.linear(x, fp32_weight), 4 * n * k),
        Kernel("F.linear", 16, "bf16", lambda x: F.linear(x.bfloat16(), bf16_weight), 2 * n * k),
        Kernel("dequant eager", 8, "fp32", lambda x: F.linear(x, codes[8].float() * scale8), n * k + 4),
    ]
    if compile_fn is not None:
        kernels.append(Kernel("dequant compile", 8, "fp32", lambda x: compile_fn(x, codes[8], scale8), n * k + 4))
    kernels += [int8_weight_only(8, torch.float32), int8_weight_only(8, torch.bfloat16), int_mm(8)]
    kernels += [int4_weight_only(4, torch.float32), int4_weight_only(4, torch.bfloat16), int_mm(4)]
    kernels += [
        int4_weight_only(2, torch.bfloat16),
        int8_weight_only(2, torch.bfloat16),
        int_mm(2),
        Kernel("unpack/call", 2, "bf16", unpack_each_call, ternary_bytes.numel() + 4 * n),
    ]
    return kernels, weights


def median_seconds(kernels: list[Kernel], x: torch.Tensor, rounds: int, min_run_time: float) -> list[float]:
    """Per kernel, the median over ``rounds`` of a blocked run's median time.

    Each round times every kernel once, so load from other processes on a shared machine falls on
    all kernels alike instead of on whichever happened to run at that moment.
    """
    timers = []
    for kernel in kernels:
        kernel.call(x)  # warm-up: compilation, allocator
        timers.append(Timer(stmt="call(x)", globals={"call": kernel.call, "x": x}))
    samples = [[timer.blocked_autorange(min_run_time=min_run_time).median for timer in timers] for _ in range(rounds)]
    return [statistics.median(column) for column in zip(*samples)]


def format_sizes(in_features: int, out_features: int) -> str:
    """Bytes of one weight matrix in each storage format (codes only; a scale is 2-4 bytes)."""
    numel = in_features * out_features
    sizes = {"fp32": 4 * numel, "fp16": 2 * numel, "int8 (file, 5-8 bit)": numel,
             "nibbles (file, 3-4 bit)": -(-numel // 2), "ternary 1.6 bit (file)": -(-numel // 5)}
    return ", ".join(f"{name} {size / 2**20:.2f} MiB" for name, size in sizes.items())


def relative_error(kernel: Kernel, x: torch.Tensor, weights: dict) -> float:
    weight = weights[8] if kernel.bits > 8 else weights[kernel.bits]
    x_used = fake_quantize_activation(x) if kernel.act == "a8" else x.double()
    reference = x_used @ weight.T
    return float((kernel.call(x).double() - reference).abs().max() / reference.abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8], help="activation rows (batch*seq)")
    parser.add_argument("--repeats", type=int, default=7, help="rounds over all kernels; the median is kept")
    parser.add_argument("--min-run-time", type=float, default=0.05, help="seconds per blocked run")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES), help="in x out")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    compile_fn = None
    if not args.no_compile:
        # One static graph per (shape, rows): 5 shapes x 2 row counts exceed dynamo's default limit of 8.
        torch._dynamo.config.recompile_limit = 64
        compile_fn = torch.compile(lambda x, c, s: F.linear(x, c.float() * s), dynamic=False)

    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} thread(s), median of {args.repeats} interleaved rounds "
          f"of >= {args.min_run_time}s blocked runs")
    header = (f"{'in x out':<10}{'rows':>5}  {'bits':>4}  {'kernel':<16}{'act':<6}{'weight MiB':>11}"
              f"{'time us':>10}{'vs fp32':>9}{'rel err':>10}")
    print(header)
    print("-" * len(header))
    for shape_name in args.shapes:
        print(f"{shape_name}: {format_sizes(*SHAPES[shape_name])}")
        kernels, weights = build_kernels(*SHAPES[shape_name], compile_fn)
        for rows in args.rows:
            x = torch.randn(rows, SHAPES[shape_name][0], generator=torch.Generator().manual_seed(rows))
            times = median_seconds(kernels, x, args.repeats, args.min_run_time)
            baseline = times[0]  # the first kernel is fp32 F.linear
            for kernel, seconds in zip(kernels, times):
                print(f"{shape_name:<10}{rows:>5}  {kernel.bits:>4}  {kernel.name:<16}{kernel.act:<6}"
                      f"{kernel.weight_bytes / 2**20:>11.2f}{seconds * 1e6:>10.1f}{baseline / seconds:>8.2f}x"
                      f"{relative_error(kernel, x, weights):>10.1e}", flush=True)
            print()


if __name__ == "__main__":
    main()
