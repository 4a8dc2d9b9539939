"""Fixtures of the training tests: the tokenizer directory and tiny random teachers (`shared_data`
and `gpt2_tokenizer` come from tests/conftest.py).

Every run here is tiny (2 layers, width 32, blocks of 32 tokens, a few steps) and reads the real
WikiText-2 text under the CPU testbed protocol (../shared/data/README.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from training_helpers import save_tiny_teacher


@pytest.fixture(scope="session")
def tokenizer_dir(shared_data) -> Path:
    return shared_data / "gpt2-tokenizer"


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory, gpt2_tokenizer) -> Path:
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher"), gpt2_tokenizer)


@pytest.fixture(scope="session")
def tiny_teacher_no_dropout(tmp_path_factory, gpt2_tokenizer) -> Path:
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher-nodrop"), gpt2_tokenizer, dropout=0.0)
