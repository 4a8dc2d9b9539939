"""Shared fixtures: the real data beside the checkout, and tiny models built from configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, the read-only real evaluation data (see its README)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: the tests need ../shared/data beside the checkout")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # two cores are shared by two pytest workers
    yield


@pytest.fixture(scope="session")
def gpt2_tokenizer(shared_data):
    """OpenAI's GPT-2 BPE from ../shared/data/gpt2-tokenizer (offline)."""
    from quantgpt.tokenization import load_gpt2_tokenizer

    return load_gpt2_tokenizer(shared_data / "gpt2-tokenizer")


@pytest.fixture(scope="session")
def bart_tokenizer(shared_data):
    """BART's vocabulary rebuilt offline from the GPT-2 BPE and fairseq's dictionary."""
    from quantgpt.tokenization import load_bart_tokenizer

    return load_bart_tokenizer(shared_data / "gpt2-tokenizer")
