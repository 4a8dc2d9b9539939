"""Fixtures shared by the task tests: the read-only real data and the offline tokenizers."""

from pathlib import Path

import pytest

from quantgpt.tokenization import load_bart_tokenizer, load_gpt2_tokenizer

SHARED_DATA = (Path(__file__).resolve().parents[2] / "../shared/data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def gpt2_tokenizer(shared_data):
    return load_gpt2_tokenizer(shared_data / "gpt2-tokenizer")


@pytest.fixture(scope="session")
def bart_tokenizer(shared_data):
    return load_bart_tokenizer(shared_data / "gpt2-tokenizer")
