"""File size, peak memory and decoding speed of the packed low-bit runtime on a GPT-2-small-shaped model.

    python benchmarks/runtime.py                       # 2-2-8, 4-4-8, 8-8-8; writes docs/results/runtime.md
    python benchmarks/runtime.py --bits 2-2-8 --repeats 3 --threads 1

A GPT-2 small model (12 layers, width 768, vocabulary 50257) with random weights is saved in fp32,
quantized with QuantGPT's quantizer at each bit setting (gamma = 1: sizes and speed do not depend
on training) and exported twice: position embedding in fp16 (the paper keeps it full precision)
and at 8 bits (`--position-bits 8`, beyond the paper). Then each variant runs in a fresh Python
process, so that its peak resident memory (`ru_maxrss`) is its own:

  fp32      the Transformers model loaded with from_pretrained (sdpa attention);
  fake      the fake-quantized model loaded with load_quantized (what training evaluates: every
            forward pass re-quantizes every weight);
  packed    load_packed: int8 codes unpacked once at load, int8 x int8 `torch._int_mm` linear layers;
  llama.cpp the 2-2-8 model exported with `export_gguf` as TQ2_0 and as TQ1_0 (the same codes and fp16
            scales, GPT-2's tokenizer from `--tokenizer`), run by llama.cpp through llama-cpp-python.
            Batch 1 decodes with the high-level `Llama.generate` (greedy); that API holds one
            sequence, so batch 8 decodes 8 sequences of one context through the low-level
            `llama_batch` API (one sequence id per row, one `llama_decode` per step).

Speed is greedy decoding with the KV cache: `--new-tokens` tokens after a `--prompt-tokens` prompt
of random ids, at each batch size; tokens/s = batch * new tokens / wall time of `generate` (the
prompt's prefill included), the median of `--repeats` runs after a warm-up. All variants run
one after the other in the same invocation, so their ratios share the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 2**20
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "docs" / "results" / "runtime.md"
DEFAULT_TOKENIZER = REPO / ".." / "shared" / "data" / "gpt2-tokenizer"
GGUF_BITS = "2-2-8"
GGUF_TYPES = ("tq2_0", "tq1_0")


# ---------------------------------------------------------------------------------- the worker


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MIB


def _peak_mib() -> float:
    """This process's peak resident set: VmHWM, which (unlike ru_maxrss, inherited across fork and
    exec from the parent's size) starts afresh at exec; ru_maxrss where /proc is missing."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _load(kind: str, path: str):
    if kind == "fp32":
        from transformers import GPT2LMHeadModel

        return GPT2LMHeadModel.from_pretrained(path).eval()
    if kind == "fake":
        from quantgpt import load_quantized

        return load_quantized(path)
    from quantgpt.export import load_packed

    return load_packed(path)


WEIGHT_MATMULS = {"aten::_int_mm", "aten::addmm", "aten::mm"}  # GPT-2's Conv1D is addmm, the LM head mm


def profile_matmul_share(run) -> float:
    """The share of CPU time `run()` spends in weight matrix products (the rest: attention,
    activation quantization, LayerNorm, sampling, Python), from torch.profiler's self times."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        run()
    events = profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    return sum(event.self_cpu_time_total for event in events if event.key in WEIGHT_MATMULS) / total


class LlamaCppDecoder:
    """Greedy decoding in llama.cpp, one thread: batch 1 through the high-level `Llama.generate`,
    larger batches as one sequence per row of a `llama_batch` in a context of `max_batch` sequences
    (the high-level API decodes a single sequence)."""

    def __init__(self, path: str, threads: int, max_batch: int, max_tokens: int) -> None:
        import llama_cpp

        from quantgpt.export.gguf_runtime import load_gguf

        self.lib = llama_cpp
        self.llm = load_gguf(path, threads=threads, n_ctx=max_tokens)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = max_batch * max_tokens
        params.n_seq_max = max_batch
        params.n_threads = params.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(self.llm._model.model, params)
        self.batch = llama_cpp.llama_batch_init(params.n_batch, 0, max_batch)
        self.n_vocab = self.llm.n_vocab()

    def _step(self, rows: list[list[int]], start: int) -> list[int]:
        """Decode `rows` (one sequence each, positions from `start`); the next greedy token of each."""
        import numpy as np

        batch, n, last = self.batch, 0, []
        for sequence, tokens in enumerate(rows):
            for offset, token in enumerate(tokens):
                batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, start + offset, 1
                batch.seq_id[n][0] = sequence
                batch.logits[n] = offset == len(tokens) - 1
                n += 1
            last.append(n - 1)
        batch.n_tokens = n
        if self.lib.llama_decode(self.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        return [
            int(np.ctypeslib.as_array(self.lib.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,)).argmax())
            for i in last
        ]

    def decode(self, prompt: list[list[int]], new_tokens: int) -> None:
        if len(prompt) == 1:
            options = {"temp": 0.0, "top_k": 1, "top_p": 1.0, "min_p": 0.0, "repeat_penalty": 1.0, "reset": True}
            for count, _ in enumerate(self.llm.generate(prompt[0], **options), start=1):
                if count == new_tokens:
                    return
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.ctx), True)
        tokens = self._step(prompt, 0)
        for step in range(new_tokens - 1):
            tokens = self._step([[token] for token in tokens], len(prompt[0]) + step)


def llama_cpp_worker(spec: dict) -> dict:
    """`worker` for a GGUF file: the same imports before the baseline, the same prompts and timing."""
    import torch
    import transformers  # noqa: F401  every variant imports the same modules before the baseline
    import llama_cpp  # noqa: F401

    import quantgpt.export  # noqa: F401

    baseline = _rss_mib()
    start = time.perf_counter()
    max_tokens = spec["prompt_tokens"] + spec["new_tokens"]
    decoder = LlamaCppDecoder(spec["path"], spec["threads"], max(spec["batches"]), max_tokens)
    load_seconds = time.perf_counter() - start
    tokens_per_second = {}
    decoder.decode([[0] * spec["prompt_tokens"]], 4)  # warm-up; touches every weight
    after_warm_up = _rss_mib()
    for batch in spec["batches"]:
        prompt = torch.randint(0, decoder.n_vocab, (batch, spec["prompt_tokens"]), generator=torch.Generator().manual_seed(batch))
        prompt = prompt.tolist()
        decoder.decode(prompt, 2)  # warm-up at this batch size
        times = []
        for _ in range(spec["repeats"]):
            start = time.perf_counter()
            decoder.decode(prompt, spec["new_tokens"])
            times.append(time.perf_counter() - start)
        tokens_per_second[str(batch)] = batch * spec["new_tokens"] / statistics.median(times)
    return {
        "matmul_share": None,
        "baseline_rss_mib": baseline,
        "after_warm_up_rss_mib": after_warm_up,
        "peak_rss_mib": _peak_mib(),
        "load_seconds": load_seconds,
        "tokens_per_second": tokens_per_second,
    }


def worker(spec: dict) -> dict:
    """Load one variant, time greedy decoding, report memory; runs in its own process."""
    if spec["kind"] == "llama.cpp":
        return llama_cpp_worker(spec)
    import torch
    import transformers  # noqa: F401  every variant imports the same modules before the baseline
    from transformers.utils import logging as transformers_logging

    import quantgpt.export  # noqa: F401

    transformers_logging.set_verbosity_error()
    torch.set_num_threads(spec["threads"])
    baseline = _rss_mib()
    start = time.perf_counter()
    model = _load(spec["kind"], spec["path"])
    load_seconds = time.perf_counter() - start
    vocab, eos = model.config.vocab_size, model.config.eos_token_id

    def decode(prompt: torch.Tensor, new_tokens: int) -> None:
        model.generate(
            input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
            min_new_tokens=new_tokens, do_sample=False, pad_token_id=eos, use_cache=True,
        )

    tokens_per_second = {}
    with torch.inference_mode():
        decode(torch.zeros(1, spec["prompt_tokens"], dtype=torch.long), 4)  # warm-up; touches every weight
        after_warm_up = _rss_mib()  # from_pretrained maps the file lazily: count weights once used
        for batch in spec["batches"]:
            prompt = torch.randint(0, vocab, (batch, spec["prompt_tokens"]), generator=torch.Generator().manual_seed(batch))
            decode(prompt, 2)  # warm-up at this batch size
            times = []
            for _ in range(spec["repeats"]):
                start = time.perf_counter()
                decode(prompt, spec["new_tokens"])
                times.append(time.perf_counter() - start)
            tokens_per_second[str(batch)] = batch * spec["new_tokens"] / statistics.median(times)
        matmul_share = profile_matmul_share(lambda: decode(prompt[:1], 8)) if spec.get("profile") else None
    return {
        "matmul_share": matmul_share,
        "baseline_rss_mib": baseline,
        "after_warm_up_rss_mib": after_warm_up,
        "peak_rss_mib": _peak_mib(),
        "load_seconds": load_seconds,
        "tokens_per_second": tokens_per_second,
    }


# ---------------------------------------------------------------------------------- the driver


def run_worker(spec: dict) -> dict:
    """Run `worker(spec)` in a fresh interpreter and return its JSON report."""
    command = [sys.executable, __file__, "--worker", json.dumps(spec)]
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"worker {spec['kind']} failed:\n{finished.stderr[-3000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def combine(runs: list[dict]) -> dict:
    """One variant over rounds: memory from the first (a fresh process each time, the same model),
    the profile from the last, speeds and load times as the median over rounds."""
    combined = dict(runs[0])
    combined["matmul_share"] = runs[-1]["matmul_share"]
    combined["load_seconds"] = statistics.median(run["load_seconds"] for run in runs)
    combined["tokens_per_second"] = {
        batch: statistics.median(run["tokens_per_second"][batch] for run in runs) for batch in runs[0]["tokens_per_second"]
    }
    return combined


def gguf_breakdown(path: Path) -> dict:
    """Bytes of a GGUF file by what they hold: quantized weights, position embedding, F32 vectors,
    and the rest (header, tokenizer and other metadata, alignment)."""
    import gguf

    parts = {"weights": 0, "positions": 0, "vectors": 0}
    for tensor in gguf.GGUFReader(path).tensors:
        part = "positions" if tensor.name.startswith("position_embd") else "vectors" if len(tensor.shape) == 1 else "weights"
        parts[part] += int(tensor.n_bytes)
    parts["metadata"] = path.stat().st_size - sum(parts.values())
    return parts


def packed_breakdown(directory: Path) -> dict:
    """The same parts for a packed model: codes and scales, position embedding, fp16 vectors, and
    the rest (safetensors header and the JSON index)."""
    from safetensors import safe_open

    parts = {"weights": 0, "positions": 0, "vectors": 0}
    with safe_open(str(directory / "model.safetensors"), framework="pt") as handle:
        for key in handle.keys():
            tensor = handle.get_tensor(key)
            part = "positions" if ".wpe." in key else "weights" if key.endswith((".codes", ".scale")) or tensor.ndim > 1 else "vectors"
            parts[part] += tensor.numel() * tensor.element_size()
    total = sum((directory / name).stat().st_size for name in ("model.safetensors", "quantgpt_packed.json"))
    parts["metadata"] = total - sum(parts.values())
    return parts


def prepare(workdir: Path, bit_settings: list[str], tokenizer_dir: Path) -> dict:
    """Save the fp32 model, and per bit setting the fake-quantized model and two packed exports;
    at 2-2-8 also the GGUF files (TQ2_0 and TQ1_0, fp16 and 8-bit positions)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as transformers_logging

    from quantgpt import QuantConfig, model_size, quantize_model
    from quantgpt.export import export_gguf, export_packed
    from quantgpt.tokenization import load_gpt2_tokenizer

    transformers_logging.set_verbosity_error()
    torch.manual_seed(0)
    config = GPT2Config(architectures=["GPT2LMHeadModel"])  # GPT-2 small: 12 x 768, vocab 50257, 1024 positions
    GPT2LMHeadModel(config).save_pretrained(workdir / "fp32")
    sizes = {"fp32": (workdir / "fp32" / "model.safetensors").stat().st_size, "settings": {}}
    for bits in bit_settings:
        model = GPT2LMHeadModel.from_pretrained(workdir / "fp32").eval()
        quantize_model(model, QuantConfig(method="quantgpt", bits=bits))
        model.save_pretrained(workdir / f"fake-{bits}")
        fp16_positions = export_packed(model, workdir / f"packed-{bits}")
        eight_bit_positions = export_packed(model, workdir / f"packed-{bits}-pos8", position_bits=8)
        sizes["settings"][bits] = {
            "packed": fp16_positions.packed_bytes,
            "packed_pos8": eight_bit_positions.packed_bytes,
            "paper_mib": model_size(config, bits, "paper").quantized_mib,
            "paper_fp32_mib": model_size(config, bits, "paper").fp32_mib,
        }
        if bits == GGUF_BITS:
            tokenizer = load_gpt2_tokenizer(tokenizer_dir)
            sizes["gguf"] = {"packed_pos8_parts": packed_breakdown(workdir / f"packed-{bits}-pos8")}
            for kind in GGUF_TYPES:
                for suffix, position_bits in (("", None), ("-pos8", 8)):
                    path = workdir / f"gguf-{bits}-{kind}{suffix}.gguf"
                    export_gguf(model, path, ternary_type=kind, position_bits=position_bits, tokenizer=tokenizer)
                    sizes["gguf"][f"{kind}{suffix}"] = path.stat().st_size
                    sizes["gguf"][f"{kind}{suffix}_parts"] = gguf_breakdown(path)
        del model
    return sizes


def llama_cpp_version() -> str:
    try:
        import llama_cpp
    except ModuleNotFoundError:
        return ""
    return f"; llama.cpp through llama-cpp-python {llama_cpp.__version__}"


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x"


GGUF_PARTS = {
    "weights": "ternary weights (codes and their fp16 scales)",
    "positions": "position embedding (8 bits, row-wise)",
    "vectors": "LayerNorm weights and biases (packed: fp16; GGUF: F32)",
    "metadata": "the rest (packed: safetensors header and JSON index; GGUF: header and metadata, the tokenizer included)",
}


def gguf_size_lines(sizes: dict, fp32: int) -> list[str]:
    """The GGUF files' sizes, and what keeps TQ1_0 from the packed file's ratio, part by part."""
    gguf_sizes = sizes["gguf"]
    lines = [
        "",
        f"## GGUF files for llama.cpp ({GGUF_BITS})",
        "",
        f"The same {GGUF_BITS} model written by `export_gguf` (`quantgpt export RUN OUT.gguf --format gguf`): the "
        "same codes and fp16 scales, ternary weights as TQ2_0 (66 bytes a block of 256 weights, 2.06 bits a "
        "weight) or TQ1_0 (54 bytes, 1.69 bits; the packed file's five trits a byte are 1.6), the tied LM head "
        "not stored, LayerNorm weights and biases in F32 (as llama.cpp's converter keeps one-dimensional "
        "tensors), the position embedding in F16 or Q8_0 (`--position-bits 8`), and GPT-2's tokenizer (50,257 "
        "tokens, 50,000 merges) in the file's metadata.",
        "",
        "| file | MiB | ratio to fp32 |",
        "|---|---|---|",
    ]
    for kind in GGUF_TYPES:
        for suffix, label in (("", ""), ("-pos8", ", 8-bit positions")):
            size = gguf_sizes[f"{kind}{suffix}"]
            lines.append(f"| {kind.upper()}{label} | {size / MIB:.2f} | {_ratio(fp32, size)} |")
    packed, tq1 = gguf_sizes["packed_pos8_parts"], gguf_sizes["tq1_0-pos8_parts"]
    lines += [
        "",
        "What keeps TQ1_0 from the packed file's ratio (both with 8-bit positions), part by part:",
        "",
        "| part | packed MiB | TQ1_0 MiB | TQ1_0 - packed MiB |",
        "|---|---|---|---|",
    ]
    for part, label in GGUF_PARTS.items():
        lines.append(f"| {label} | {packed[part] / MIB:.2f} | {tq1[part] / MIB:.2f} | {(tq1[part] - packed[part]) / MIB:+.2f} |")
    total_packed, total_tq1 = sum(packed.values()), sum(tq1.values())
    lines += [
        f"| total | {total_packed / MIB:.2f} ({_ratio(fp32, total_packed)}) | {total_tq1 / MIB:.2f} "
        f"({_ratio(fp32, total_tq1)}) | {(total_tq1 - total_packed) / MIB:+.2f} |",
        "",
        f"Without its metadata (the tokenizer, which the packed directory keeps in files its size leaves out) "
        f"the TQ1_0 file would be {_ratio(fp32, total_tq1 - tq1['metadata'])} smaller than fp32.",
    ]
    return lines


def report(args: argparse.Namespace, sizes: dict, results: dict, seconds: float) -> str:
    """The Markdown page: command, machine, then sizes, memory and speed tables."""
    import torch

    command = "python benchmarks/runtime.py " + " ".join(sys.argv[1:])
    batches = args.batches
    lines = [
        "# Packed low-bit runtime: size, memory, decoding speed",
        "",
        "Generated by (do not edit by hand):",
        "",
        "```",
        command.strip(),
        "```",
        "",
        f"GPT-2 small shape (12 layers, 768 wide, vocabulary 50257), random weights, quantized with QuantGPT's "
        f"quantizer (gamma = 1). torch {torch.__version__} on {platform.machine()} "
        f"({torch.backends.cpu.get_cpu_capability()}), {os.cpu_count()} cores shared with other jobs, "
        f"{args.threads} thread(s) per model{llama_cpp_version()}. One run took {seconds / 60:.1f} minutes; "
        f"load average {args.load_at_start:.1f} when it started.",
        "",
        "## File size",
        "",
        "fp32 is the `save_pretrained` safetensors file (tied LM head stored once). Packed is "
        "`model.safetensors` + `quantgpt_packed.json`: ternary codes five to a byte, 4 bits in nibbles, "
        "8 bits int8, fp16 scales, LayerNorm and biases in fp16; the position embedding in fp16 (as the "
        "paper keeps it) or at 8 bits (`--position-bits 8`). The paper's column counts 2 bits a ternary "
        "weight and everything else in fp32.",
        "",
        "| bits | fp32 MiB | packed MiB | ratio | packed, 8-bit positions, MiB | ratio | paper's accounting MiB | paper's ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    fp32 = sizes["fp32"]
    for bits, entry in sizes["settings"].items():
        lines.append(
            f"| {bits} | {fp32 / MIB:.1f} | {entry['packed'] / MIB:.1f} | {_ratio(fp32, entry['packed'])} | "
            f"{entry['packed_pos8'] / MIB:.1f} | {_ratio(fp32, entry['packed_pos8'])} | {entry['paper_mib']:.1f} | "
            f"{_ratio(entry['paper_fp32_mib'], entry['paper_mib'])} |"
        )
    if "gguf" in sizes:
        lines += gguf_size_lines(sizes, fp32)
    lines += [
        "",
        "## Peak resident memory",
        "",
        "Each variant in a fresh process. Baseline: the resident set with torch, Transformers and quantgpt "
        "imported. Model: the resident set after loading and one short warm-up decode, minus the baseline "
        "(the model's own share, weights touched once). Peak: the process's high-water mark (VmHWM), "
        "loading and all decoding included.",
        "",
        "| variant | baseline MiB | model MiB | model vs fp32 | peak MiB | peak vs fp32 | load s |",
        "|---|---|---|---|---|---|---|",
    ]
    peak_fp32 = results["fp32"]["peak_rss_mib"]
    own_fp32 = results["fp32"]["after_warm_up_rss_mib"] - results["fp32"]["baseline_rss_mib"]
    for name, result in results.items():
        own = result["after_warm_up_rss_mib"] - result["baseline_rss_mib"]
        lines.append(
            f"| {name} | {result['baseline_rss_mib']:.0f} | {own:.0f} | {_ratio(own, own_fp32)} | "
            f"{result['peak_rss_mib']:.0f} | {_ratio(result['peak_rss_mib'], peak_fp32)} | {result['load_seconds']:.1f} |"
        )
    header = " | ".join(f"batch {b} tok/s | vs fp32 | vs fake" for b in batches) + " | weight matmuls' share of CPU time"
    lines += [
        "",
        "## Decoding speed",
        "",
        f"Greedy, KV cache on, {args.new_tokens} new tokens after a {args.prompt_tokens}-token prompt; "
        f"tokens/s = batch x new tokens / wall time of `generate` (prefill included), median of "
        f"{args.repeats} runs after a warm-up in each of {args.rounds} interleaved rounds (one process per variant "
        f"and round), median over rounds. The fake-quantized model, which re-quantizes every weight at "
        f"every step, is timed once (first round, one run) with {args.fake_new_tokens} new tokens. The last column "
        "profiles 8 greedy tokens at batch 1 (torch.profiler self CPU time in `_int_mm`, `addmm`, `mm`; "
        "the rest is attention, activation quantization, LayerNorm, GeLU and the generation loop). The llama.cpp "
        "rows decode batch 1 with the high-level `Llama.generate`, which holds one sequence; batch 8 runs 8 "
        "sequences in one context through the low-level `llama_batch` API (one `llama_decode` a step), "
        "greedy by argmax of each row's logits.",
        "",
        f"| variant | {header} |",
        "|---|" + "---|" * (3 * len(batches) + 1),
    ]
    for name, result in results.items():
        bits = name.split(" ")[-1]
        fake = results.get(f"fake {bits}") or next((r for n, r in results.items() if n.startswith("fake")), None)
        cells = []
        for batch in batches:
            speed = result["tokens_per_second"][str(batch)]
            versus_fake = _ratio(speed, fake["tokens_per_second"][str(batch)]) if fake and name != "fp32" else "-"
            cells.append(f"{speed:.1f} | {_ratio(speed, results['fp32']['tokens_per_second'][str(batch)])} | {versus_fake}")
        share = "-" if result.get("matmul_share") is None else f"{100 * result['matmul_share']:.0f}%"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {share} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", nargs="+", default=["2-2-8", "4-4-8", "8-8-8"], help="bit settings to export and run")
    parser.add_argument("--fake-bits", nargs="*", default=["2-2-8"],
                        help="bit settings whose fake-quantized model is timed too (slow: it re-quantizes every weight each step)")
    parser.add_argument("--fake-new-tokens", type=int, default=4,
                        help="new tokens for the fake-quantized model, timed once (its step time hardly depends on length)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="batch sizes")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed generate calls per batch size; the median is kept")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds over all variants (interleaved, so that load from other jobs falls on all alike); medians kept")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads in each variant's process")
    parser.add_argument("--workdir", type=Path, help="where the models are written (default: a temporary directory)")
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER,
                        help="GPT-2 tokenizer directory written into the GGUF files (default ../shared/data/gpt2-tokenizer)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the Markdown report")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    started = time.perf_counter()
    args.load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="quantgpt-runtime-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        print(f"preparing models in {workdir} ...", flush=True)
        sizes = prepare(workdir, args.bits, args.tokenizer)
        common = {k: getattr(args, k) for k in ("batches", "prompt_tokens", "new_tokens", "repeats", "threads")}
        fake = {**common, "new_tokens": args.fake_new_tokens, "repeats": 1}
        variants = [("fp32", "fp32", workdir / "fp32", common)]
        variants += [(f"fake {bits}", "fake", workdir / f"fake-{bits}", fake) for bits in args.fake_bits if bits in args.bits]
        variants += [(f"packed {bits}", "packed", workdir / f"packed-{bits}", common) for bits in args.bits]
        if GGUF_BITS in args.bits and llama_cpp_version():
            variants += [(f"llama.cpp {kind.upper()} {GGUF_BITS}", "llama.cpp", workdir / f"gguf-{GGUF_BITS}-{kind}.gguf", common)
                         for kind in GGUF_TYPES]
        elif GGUF_BITS in args.bits:
            print("llama-cpp-python is not installed: the llama.cpp rows are left out (pip install 'quantgpt[gguf]')")
        rounds: dict[str, list[dict]] = {name: [] for name, *_ in variants}
        for round_number in range(args.rounds):
            for name, kind, path, settings in variants:
                if kind == "fake" and round_number > 0:
                    continue  # tens of times slower than the rest: one round says enough
                print(f"round {round_number + 1}/{args.rounds}: {name} ...", flush=True)
                # Profiled in the last round: memory is read from the first, which the profiler would inflate.
                profile = round_number == args.rounds - 1 and kind != "fake"
                rounds[name].append(run_worker({"kind": kind, "path": str(path), "profile": profile, **settings}))
                print(f"  {json.dumps(rounds[name][-1])}", flush=True)
        results = {name: combine(runs) for name, runs in rounds.items()}
    page = report(args, sizes, results, time.perf_counter() - started)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(page)
    print(page)


if __name__ == "__main__":
    main()
