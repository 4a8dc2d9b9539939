"""Helpers of the training tests (imported by conftest and the test modules)."""

from __future__ import annotations

from pathlib import Path

from tiny_models import tiny_model

BLOCK = 32


def save_tiny_teacher(directory: Path, tokenizer, dropout: float = 0.1, seed: int = 0) -> Path:
    """A random 2-layer GPT-2 (width 32) saved with the tokenizer, as a fine-tuned teacher would be."""
    model = tiny_model(
        "tiny", seed=seed, vocab_size=len(tokenizer), resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout
    )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def lm_flags(shared_data: Path, block: int = BLOCK, train_blocks: int = 32, eval_blocks: int = 4) -> list[str]:
    """Command-line flags of a tiny WikiText-2 run on the CPU testbed splits."""
    return [
        "--task", "lm", "--dataset", "wikitext-2", "--data-dir", str(shared_data),
        "--train-split", "testbed-train", "--eval-split", "testbed-select",
        "--block-size", str(block), "--max-train-blocks", str(train_blocks), "--max-eval-blocks", str(eval_blocks),
        "--eval-batch-size", "4", "--no-progress",
    ]
