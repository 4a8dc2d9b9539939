"""Atomic directory replacement (keeping the last K checkpoints: test_training_checkpoint_files)."""

from __future__ import annotations

from quantgpt.durable import recover_directory, replace_directory


def test_replace_directory_swaps_in_the_new_content(tmp_path):
    final = tmp_path / "best"
    final.mkdir()
    (final / "old.txt").write_text("old")
    tmp = tmp_path / ".tmp-best"
    tmp.mkdir()
    (tmp / "new.txt").write_text("new")
    replace_directory(tmp, final)
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]  # neither the temporary nor the old copy is left


def test_recover_directory_brings_back_the_moved_aside_copy(tmp_path):
    old = tmp_path / ".old-best"  # a crash between the two renames of replace_directory
    old.mkdir()
    (old / "config.json").write_text("{}")
    recover_directory(tmp_path / "best")
    assert (tmp_path / "best" / "config.json").is_file() and not old.exists()
