"""Helpers of the bad-input tests: a hostile pickle, a way to forbid unpickling, damaged files, snapshots."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch

PICKLE_NAMES = ("custom_checkpoint_0.pkl", "random_states_0.pkl", "pytorch_model.bin", "optimizer.bin", "scheduler.bin")


class PlantedPickle:
    """Unpickling this creates the marker file: proof that something was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def plant_pickles(directory: Path, marker: Path, names: tuple[str, ...] = PICKLE_NAMES) -> None:
    """Hostile pickles under the names Accelerate and Transformers would load."""
    payload = pickle.dumps(PlantedPickle(marker))
    for name in names:
        (directory / name).write_bytes(payload)


def forbid_unpickling(monkeypatch) -> None:
    """Make every way of unpickling fail loudly, so that a test passes only if nothing is unpickled."""

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    class RefusingUnpickler(pickle.Unpickler):
        def load(self):
            refuse()

    monkeypatch.setattr(pickle, "Unpickler", RefusingUnpickler)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file and folder under `roots`: folders as "dir", files by SHA-256."""
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            found[str(path)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def truncate(path: Path, keep: float = 0.5) -> Path:
    """`path` cut to the first `keep` of its bytes, as a kill or a full disk leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
