"""From run directories to the figures: load the teacher and each quantized student, take out what
each figure draws (embeddings, hidden states of one sentence, weights and clipping ranges, gammas,
metrics), and write the PNGs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..convert import quantized_weight_modules
from ..quantizers import DynamicScalingQuantizer
from ..tokenization import load_gpt2_tokenizer
from . import figures
from .runs import RunInfo, load_full_precision, load_run_model, read_run
from ..errors import UsageError

FIGURE_FILES = {
    "embeddings": "figure2_embeddings.png",
    "similarity": "figure3_similarity.png",
    "clipping": "figure4_clipping.png",
    "gamma": "figure8_gamma.png",
    "curves": "training_curves.png",
}
# Byte-level BPE numbers its merges by frequency after the 256 byte symbols (and <|endoftext|>):
# the first merged tokens are the commonest words, the ones Figure 2 shows.
FIRST_MERGED_TOKEN = 257
EMBEDDING_TOKENS = 2000
MAX_SENTENCE_TOKENS = 32


def short_module_name(name: str) -> str:
    """'transformer.h.0.attn.c_attn' -> 'h0.attn.c_attn'; 'transformer.wte' -> 'wte'."""
    name = name.removeprefix("transformer.").removeprefix("model.")
    parts = name.split(".")
    if len(parts) > 1 and parts[0] in ("h", "layers") and parts[1].isdigit():
        return f"h{parts[1]}." + ".".join(parts[2:])
    return name


def default_sentence(data_dir: str | Path) -> str:
    """A real sentence for Figure 3: the first line of WikiText-2 test with 15 to 30 words, no
    `<unk>` and no heading (the same sentence every time)."""
    path = Path(data_dir) / "wikitext-2" / "test.txt"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").split("\n"):
            first = line.strip().split(" . ")[0]
            words = first.split()
            if 15 <= len(words) <= 30 and "<unk>" not in first and not first.startswith("="):
                return first + " ."
    return "The quick brown fox jumps over the lazy dog while the farmer watches from the old wooden fence ."


def _teacher_dir(runs: Sequence[RunInfo], teacher: str | Path | None) -> Path:
    if teacher is not None:
        return Path(teacher)
    for run in runs:
        if run.teacher is not None:
            return run.teacher
    for run in runs:
        if run.is_teacher:
            return run.model_dir
    raise UsageError("no full-precision model: pass a teacher run directory or --teacher DIR")


def _word_embedding(model: nn.Module) -> nn.Module:
    return model.get_input_embeddings()


@torch.no_grad()
def _embedding_matrix(model: nn.Module, quantized: bool) -> torch.Tensor:
    embedding = _word_embedding(model)
    return (embedding.quantized_weight() if quantized else embedding.weight).detach()


@torch.no_grad()
def _last_hidden(model: nn.Module, input_ids: torch.Tensor) -> np.ndarray:
    return model(input_ids=input_ids, output_hidden_states=True).hidden_states[-1][0].float().numpy()


def _pick_module(teacher: nn.Module, students: dict[str, nn.Module]) -> str:
    """The quantized linear module whose teacher weights have the most extreme outliers (largest
    max|w| / mean|w|): where a clipping factor is hardest to place (the paper's point in Figure 4)."""
    names = [
        name
        for name, module in quantized_weight_modules(next(iter(students.values()))).items()
        if not getattr(module.weight_quantizer, "per_row", False)
    ]
    state = dict(teacher.named_parameters())

    def outlier_ratio(name: str) -> float:
        w = state[f"{name}.weight"].detach().abs()
        return float(w.max() / w.mean().clamp_min(1e-12))

    return max(names, key=outlier_ratio)


def write_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    teacher: str | Path | None = None,
    sentence: str | None = None,
    data_dir: str | Path = "../shared/data",
    module: str | None = None,
) -> dict[str, Path]:
    """Draws every figure that the runs allow into `out_dir`; returns {figure: path}.

    run_dirs: run directories of `quantgpt quantize` (the students) and optionally of the teacher's
    fine-tuning. The full-precision model is `teacher`, else the teacher named in a quantization
    run's run_config.json, else a fine-tuning run among `run_dirs`. Figures 2-4 need at least one
    run of this package's methods, Figure 8 a QuantGPT run; the training curves need only metrics
    (runs of a peer library and the full-precision distillation reference appear there only).
    """
    runs = [read_run(path) for path in run_dirs]
    if not runs:
        raise UsageError("report needs at least one run directory")
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}

    curves = {}
    for run in runs:
        train = [(r["step"], r["loss"]) for r in run.metrics if r.get("kind") == "train" and "loss" in r]
        evals = [r for r in run.metrics if r.get("kind") == "eval" and "perplexity" in r and r.get("model") != "best"]
        split = evals[0].get("split", "") if evals else ""
        curves[run.label] = {
            "train": tuple(map(list, zip(*train))) if train else ([], []),
            "eval": ([r["step"] for r in evals], figures.finite([r["perplexity"] for r in evals]), split),
            "teacher": run.is_teacher,
        }
    written["curves"] = figures.plot_training_curves(curves, out_dir / FIGURE_FILES["curves"])

    quantized_runs = [run for run in runs if run.has_our_quantizers]
    if not quantized_runs:
        return written
    teacher_dir = _teacher_dir(runs, teacher)
    teacher_model = load_full_precision(teacher_dir)
    students = {run.label: load_run_model(run) for run in quantized_runs}

    # Figure 2: the commonest merged tokens, full-precision vs each quantized embedding.
    vocab = _embedding_matrix(teacher_model, quantized=False).shape[0]
    start = FIRST_MERGED_TOKEN if vocab > FIRST_MERGED_TOKEN + 100 else 0
    token_ids = np.arange(start, min(vocab, start + EMBEDDING_TOKENS))
    written["embeddings"] = figures.plot_embedding_projection(
        _embedding_matrix(teacher_model, False)[token_ids].numpy(),
        {label: _embedding_matrix(model, True)[token_ids].numpy() for label, model in students.items()},
        out_dir / FIGURE_FILES["embeddings"],
        token_ids,
    )

    # Figure 3: one real sentence through every model.
    tokenizer = load_gpt2_tokenizer(teacher_dir)
    text = sentence or default_sentence(data_dir)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:MAX_SENTENCE_TOKENS]
    input_ids = torch.tensor([ids])
    tokens = [tokenizer.decode([i]).strip() or "␣" for i in ids]
    hidden = {"full precision": _last_hidden(teacher_model, input_ids)}
    hidden.update({label: _last_hidden(model, input_ids) for label, model in students.items()})
    written["similarity"] = figures.plot_similarity_maps(hidden, tokens, out_dir / FIGURE_FILES["similarity"])

    # Figure 4: one module's full-precision weights and each method's learned clipping range.
    name = module or _pick_module(teacher_model, students)
    teacher_weight = dict(teacher_model.named_parameters())[f"{name}.weight"].detach()
    ranges = {}
    for label, model in students.items():
        quantized = quantized_weight_modules(model)
        if name not in quantized:
            raise UsageError(f"module {name!r} is not quantized in run {label}; quantized are {', '.join(quantized)}")
        with torch.no_grad():
            lower, upper = quantized[name].weight_quantizer.clipping_range(quantized[name].weight.detach())
        ranges[label] = (float(lower.mean()), float(upper.mean()))
    written["clipping"] = figures.plot_clipping_histogram(
        teacher_weight.numpy(), ranges, short_module_name(name), out_dir / FIGURE_FILES["clipping"]
    )

    # Figure 8: QuantGPT's gammas.
    gammas, row_gammas = {}, {}
    for label, model in students.items():
        modules = quantized_weight_modules(model)
        quantizers = {n: m.weight_quantizer for n, m in modules.items() if isinstance(m.weight_quantizer, DynamicScalingQuantizer)}
        if not quantizers:
            continue
        gammas[label] = {
            short_module_name(n) + (" (row mean)" if q.per_row else ""): float(q.gamma.detach().mean())
            for n, q in quantizers.items()
        }
        rows = [q.gamma.detach().numpy() for q in quantizers.values() if q.per_row]
        if rows:
            row_gammas[label] = rows[0]
    if gammas:
        written["gamma"] = figures.plot_gammas(gammas, row_gammas, out_dir / FIGURE_FILES["gamma"])
    return written
