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
