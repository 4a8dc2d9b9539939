"""Staged outputs: the usual file modes, a crash between the renames recovered, no parents left on failure."""

from __future__ import annotations

import os
import stat

import pytest

from quantgpt.export.output_path import check_output_path, staged_output


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_staged_directory_and_file_get_the_modes_of_the_umask(tmp_path, umask_022):
    with staged_output(tmp_path / "packed", directory=True) as staging:
        (staging / "weights.bin").write_bytes(b"x")
    with staged_output(tmp_path / "model.gguf", directory=False) as staging:
        staging.write_bytes(b"GGUF")
    assert mode(tmp_path / "packed") == 0o755
    assert mode(tmp_path / "model.gguf") == 0o644


def test_a_kill_between_the_two_renames_is_recovered_by_the_next_check(tmp_path):
    aside = tmp_path / ".old-packed"  # what replace_directory leaves when killed after moving OUT aside
    aside.mkdir()
    (aside / "index.json").write_text("{}")
    out = check_output_path(tmp_path / "packed", kind="packed model", is_same_kind=lambda p: True, overwrite=True)
    assert (out / "index.json").read_text() == "{}" and not aside.exists()


def test_replacing_keeps_nothing_aside(tmp_path):
    out = tmp_path / "packed"
    for content in ("old", "new"):
        with staged_output(out, directory=True) as staging:
            (staging / "index.json").write_text(content)
    assert (out / "index.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["packed"]


def test_a_failed_write_leaves_no_parent_folders(tmp_path):
    out = tmp_path / "a" / "b" / "packed"
    with pytest.raises(OSError), staged_output(out, directory=True) as staging:
        (staging / "part").write_bytes(b"x")
        raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []
    with staged_output(out, directory=True) as staging:
        (staging / "index.json").write_text("{}")
    assert (out / "index.json").is_file()


KILLED_WHILE_STAGING = """
import os, signal, sys
from pathlib import Path
from quantgpt.export.output_path import staged_output
out, directory = Path(sys.argv[1]), sys.argv[2] == "dir"
with staged_output(out, directory=directory) as staging:
    (staging / "weights.bin" if directory else staging).write_bytes(b"half")
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_the_next_export_removes_what_a_killed_one_left(tmp_path, kind):
    import subprocess
    import sys

    out = tmp_path / ("packed" if kind == "dir" else "model.gguf")
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_STAGING, str(out), kind], capture_output=True, timeout=120)
    assert killed.returncode == -9
    (leftover,) = [p for p in tmp_path.iterdir()]
    assert leftover.name.startswith(f".{out.name}.tmp-") and not out.exists()  # the debris the issue found
    others = [tmp_path / f".{out.name}.tmp-short", tmp_path / ".other.tmp-abcd1234", tmp_path / "notes.txt"]
    for path in others:
        path.write_text("the user's")
    with staged_output(out, directory=kind == "dir") as staging:
        (staging / "weights.bin" if kind == "dir" else staging).write_bytes(b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, *(p.name for p in others)])
