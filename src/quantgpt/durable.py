"""Flushing to disk before a rename, so a file or directory put in place by `os.replace` survives a crash."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def fsync_tree(path: Path) -> None:
    """Flush every file under `path`, then the directories, to disk (a rename is only as durable
    as the data it points to)."""
    for directory, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(directory, name), "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(Path(directory))


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (the renames in it); a file system that cannot is passed over."""
    with contextlib.suppress(OSError):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
