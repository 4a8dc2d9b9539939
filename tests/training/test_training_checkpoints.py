"""Atomic directory replacement and keeping the last K checkpoints."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

from quantgpt.training.checkpoints import TRAINER_STATE, CheckpointManager, recover_directory, replace_directory


class FakeAccelerator(SimpleNamespace):
    """Stands in for Accelerate's save/load in one process: writes one file per save."""

    is_main_process = True

    def wait_for_everyone(self) -> None:
        pass

    def save_state(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)  # as Accelerate does
        with open(f"{directory}/model.safetensors", "w") as handle:
            handle.write("weights")

    def load_state(self, directory: str) -> None:
        self.loaded = directory


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


def test_manager_keeps_the_last_k_complete_checkpoints(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2, accelerator=FakeAccelerator())
    for step in (3, 6, 9, 12):
        manager.save(step, {"step": step})
    (tmp_path / "checkpoints" / ".tmp-step-15").mkdir()  # a save killed half-way is never picked
    (tmp_path / "checkpoints" / "step-99").mkdir()  # nor a directory without its trainer state
    assert [step for step, _ in manager.checkpoints()] == [9, 12]
    latest = manager.latest()
    assert latest.name == "step-12"
    assert json.loads((latest / TRAINER_STATE).read_text()) == {"step": 12}
    assert manager.load(latest) == {"step": 12}
    assert manager.accelerator.loaded == str(latest)
    assert (latest / "model.safetensors").read_text() == "weights"
