"""The paper's figures as PNG files, drawn with matplotlib's Agg backend (no display needed).

Each function takes plain arrays (what to draw), writes one PNG and returns its path; reading
models and runs is `report.collect`'s job. Figure numbers are the paper's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: figures are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

DPI = 120
# One colour per method, the same in every figure.
METHOD_COLORS = {
    "full precision": "black",
    "quantgpt": "tab:red",
    "pact": "tab:blue",
    "lsq": "tab:green",
    "laq": "tab:purple",
    "rtn": "tab:gray",
    # the testbed's variants (testbed/variants.py)
    "pact-weights": "tab:cyan",
    "quantgpt-logit": "tab:pink",
    "quantgpt-pact-gradient": "tab:brown",
}


def color_of(label: str) -> str:
    """The method's colour for a label such as "quantgpt 2-2-8" or "full precision (teacher)"."""
    if label.startswith("full precision"):
        return METHOD_COLORS["full precision"]
    return METHOD_COLORS.get(label.split(" ")[0].lower(), "tab:orange")


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def pca_basis(x: np.ndarray, components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(mean, basis (d, components)) of the principal axes of the rows of x, by SVD."""
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:components].T


def plot_embedding_projection(
    full_precision: np.ndarray, quantized: Mapping[str, np.ndarray], path: Path, token_ids: np.ndarray | None = None
) -> Path:
    """Figure 2: the word embeddings (rows) projected on the two principal axes of the full-precision
    embedding, full precision beside each quantized model, all panels on the same scale."""
    mean, basis = pca_basis(full_precision)
    panels = {"full precision": full_precision, **quantized}
    points = {label: (matrix - mean) @ basis for label, matrix in panels.items()}
    limit = max(float(np.abs(p).max()) for p in points.values()) * 1.05
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    for ax, (label, xy) in zip(axes[0], points.items()):
        ax.scatter(xy[:, 0], xy[:, 1], s=2, alpha=0.35, color=color_of(label), linewidths=0)
        spread = float(np.sqrt((xy**2).sum(axis=1).mean()))
        ax.set_title(f"{label}\nRMS radius {spread:.3f}", fontsize=9)
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    axes[0][0].set_xlabel("PC 1 of the full-precision embedding", fontsize=8)
    axes[0][0].set_ylabel("PC 2", fontsize=8)
    count = len(full_precision) if token_ids is None else len(token_ids)
    fig.suptitle(f"Figure 2: word embeddings of {count} tokens, full precision vs quantized (same axes)", fontsize=10)
    return _save(fig, path)


def cosine_similarity_map(hidden: np.ndarray) -> np.ndarray:
    """(n, n) cosine similarities between the n token representations (rows) of one sentence."""
    unit = hidden / np.maximum(np.linalg.norm(hidden, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def plot_similarity_maps(hidden: Mapping[str, np.ndarray], tokens: Sequence[str], path: Path) -> Path:
    """Figure 3: token-by-token cosine similarity of last-layer representations of one sentence,
    one map per model (full precision first), on one colour scale."""
    maps = {label: cosine_similarity_map(h) for label, h in hidden.items()}
    low = min(float(m.min()) for m in maps.values())
    columns = len(maps)
    fig, axes = plt.subplots(1, columns, figsize=(3.6 * columns, 3.9), squeeze=False)
    image = None
    reference = next(iter(maps.values()))
    for ax, (label, matrix) in zip(axes[0], maps.items()):
        image = ax.imshow(matrix, vmin=low, vmax=1.0, cmap="viridis")
        difference = float(np.abs(matrix - reference).mean())
        ax.set_title(label if matrix is reference else f"{label}\nmean |diff| to FP {difference:.3f}", fontsize=9)
        # Token labels on the first map only: every map has the same tokens, and text is what
        # makes matplotlib slow.
        first = ax is axes[0][0]
        ax.set_xticks(range(len(tokens)) if first else [])
        ax.set_yticks(range(len(tokens)) if first else [])
        if first:
            ax.set_xticklabels(tokens, rotation=90, fontsize=6)
            ax.set_yticklabels(tokens, fontsize=6)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="cosine similarity")
    fig.suptitle("Figure 3: token-by-token similarity of last-layer representations", fontsize=10)
    return _save(fig, path)


def plot_clipping_histogram(
    weight: np.ndarray, ranges: Mapping[str, tuple[float, float]], module: str, path: Path
) -> Path:
    """Figure 4: histogram of one module's full-precision weights (log counts, outliers visible)
    with each method's learned clipping range [lower, upper] marked."""
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    values = weight.ravel()
    # The axis spans the weights (and the ranges, up to twice the largest weight): a clipping factor
    # far beyond every weight (PACT's initial 2.5) is listed in the legend and marked at the edge.
    largest = float(np.abs(values).max())
    reach = max([largest] + [abs(v) for pair in ranges.values() for v in pair if abs(v) <= 2 * largest])
    limit = 1.08 * reach
    ax.hist(values, bins=201, color="lightgray", edgecolor="none", log=True)
    ax.set_xlim(-limit, limit)
    for index, (label, (lower, upper)) in enumerate(ranges.items()):
        style = ("-", "--", "-.", ":")[index % 4]
        color = color_of(label)
        off_scale = " (off the axis)" if max(abs(lower), abs(upper)) > limit else ""
        for value in (lower, upper):
            if abs(value) <= limit:
                ax.axvline(value, color=color, linestyle=style, linewidth=1.4)
            else:
                ax.annotate("", xy=(np.sign(value) * limit, 0.9), xycoords=("data", "axes fraction"),
                            xytext=(np.sign(value) * 0.85 * limit, 0.9), textcoords=("data", "axes fraction"),
                            arrowprops={"arrowstyle": "->", "color": color})
        ax.plot([], [], color=color, linestyle=style, label=f"{label}: [{lower:.3g}, {upper:.3g}]{off_scale}")
    mean_abs = float(np.abs(values).mean())
    ax.set_title(
        f"Figure 4: weights of {module} (mean|w| {mean_abs:.3g}, max|w| {np.abs(values).max():.3g}) "
        "and learned clipping ranges",
        fontsize=9,
    )
    ax.set_xlabel("weight value")
    ax.set_ylabel("count (log)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    return _save(fig, path)


def plot_gammas(gammas: Mapping[str, Mapping[str, float]], row_gammas: Mapping[str, np.ndarray], path: Path) -> Path:
    """Figure 8: QuantGPT's learned scale gamma of each module (left; 1.0 is the initial value), and
    the distribution of the word embedding's per-row gammas (right), one series per run."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 1]})
    names = list(next(iter(gammas.values())))
    width = 0.8 / max(len(gammas), 1)
    for index, (label, values) in enumerate(gammas.items()):
        positions = np.arange(len(names)) + (index - (len(gammas) - 1) / 2) * width
        left.bar(positions, [values[name] for name in names], width=width, label=label, color=plt.cm.tab10(index))
    left.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    left.set_xticks(range(len(names)))
    left.set_xticklabels(names, rotation=90, fontsize=7)
    left.set_ylabel("learned gamma")
    left.set_title("Figure 8: learned scaling gamma per module (alpha = gamma * mean|w|)", fontsize=9)
    left.legend(fontsize=7)
    for index, (label, values) in enumerate(row_gammas.items()):
        right.hist(values.ravel(), bins=50, alpha=0.6, label=label, color=plt.cm.tab10(index))
    right.axvline(1.0, color="black", linewidth=0.8, linestyle=":")
    right.set_title("word embedding: per-row gamma", fontsize=9)
    right.set_xlabel("gamma")
    return _save(fig, path)


def _plain_log_axis(ax: plt.Axes) -> None:
    """Log scale with plain numbers (5.6, 300) instead of 10^x labels."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax.tick_params(axis="y", which="minor", labelsize=7)


def plot_training_curves(curves: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """Training loss (left) and held-out perplexity (right) against optimizer steps, one line per
    run; full-precision runs (the teacher's stages) in the top row, quantized runs below, since
    their step counts and losses differ. `curves[label]` holds "train": (steps, losses),
    "eval": (steps, perplexities, split) and "teacher": whether it is a teacher's run."""
    groups = {
        "teacher (full precision): task loss": {k: v for k, v in curves.items() if v.get("teacher")},
        "quantization-aware training: distillation loss": {k: v for k, v in curves.items() if not v.get("teacher")},
    }
    groups = {title: group for title, group in groups.items() if group}
    fig, axes = plt.subplots(len(groups), 2, figsize=(11, 3.6 * len(groups)), squeeze=False)
    for (left, right), (title, group) in zip(axes, groups.items()):
        used: dict[str, int] = {}
        for label, curve in group.items():
            color = color_of(label)
            style = ("-", "--", ":", "-.")[used.get(color, 0) % 4]  # two runs of one colour differ by line style
            used[color] = used.get(color, 0) + 1
            steps, losses = curve["train"]
            if len(steps):
                left.plot(steps, losses, label=label, color=color, linestyle=style, linewidth=1)
            eval_steps, perplexities, split = curve["eval"]
            if len(eval_steps):
                right.plot(eval_steps, perplexities, marker="o", markersize=3, label=f"{label} ({split})", color=color, linestyle=style)
        left.set_title(f"{title}", fontsize=9)
        right.set_title("held-out perplexity (the best step is kept)", fontsize=9)
        left.set_ylabel("training loss")
        right.set_ylabel("perplexity")
        for ax in (left, right):
            ax.set_xlabel("step")
            if ax.has_data():
                _plain_log_axis(ax)
                ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def finite(values: Sequence[float]) -> list[float]:
    return [v if isinstance(v, (int, float)) and math.isfinite(v) else float("nan") for v in values]
