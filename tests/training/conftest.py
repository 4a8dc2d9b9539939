"""Fixtures of the training tests: the real data, the offline GPT-2 tokenizer, tiny random teachers.

Every run here is tiny (2 layers, width 32, blocks of 32 tokens, a few steps) and reads the real
WikiText-2 text under the CPU testbed protocol (../shared/data/README.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from quantgpt.tokenization import load_gpt2_tokenizer
from training_helpers import save_tiny_teacher

SHARED_DATA = (Path(__file__).resolve().parents[2] / "../shared/data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tokenizer_dir(shared_data) -> Path:
    return shared_data / "gpt2-tokenizer"


@pytest.fixture(scope="session")
def gpt2_tokenizer(tokenizer_dir):
    return load_gpt2_tokenizer(tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory, gpt2_tokenizer) -> Path:
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher"), gpt2_tokenizer)


@pytest.fixture(scope="session")
def tiny_teacher_no_dropout(tmp_path_factory, gpt2_tokenizer) -> Path:
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher-nodrop"), gpt2_tokenizer, dropout=0.0)
