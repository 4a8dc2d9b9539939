"""One tiny testbed job shared by the job and report tests: a teacher of a few steps, the main
job's rows at 2-2-8 (two untrained, five trained for two steps with each of two QAT seeds),
evaluated on 16 blocks of each test set."""

from __future__ import annotations

import pytest

from quantgpt.cli import main


@pytest.fixture(scope="module")
def tiny_job(tmp_path_factory, shared_data):
    """Runs `quantgpt run --recipe tiny` once; returns (output folder, cache folder)."""
    root = tmp_path_factory.mktemp("testbed")
    out, cache = root / "results", root / "cache"
    status = main(["run", "--recipe", "tiny", "--out", str(out), "--cache", str(cache),
                   "--data-dir", str(shared_data), "--no-progress", "--threads", "1", "--reference-steps", "2", "--seeds", "2"])
    assert status == 0
    return out, cache
