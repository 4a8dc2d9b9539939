"""Flushing to disk before a rename, so a file or directory put in place by `os.replace` survives a
crash, and replacing a whole directory so that a crash at any point leaves the old or the new one."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
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


def _aside(final: Path) -> Path:
    return final.with_name(f".old-{final.name}")


def replace_directory(tmp: Path, final: Path) -> None:
    """Put the complete directory `tmp` at `final`, replacing what was there.

    POSIX renames a directory onto an existing one only when that one is empty, so the old one is
    first moved aside (`.old-<name>`) and removed after; a failed second rename moves it back, and
    `recover_directory` undoes a crash between the two.
    """
    fsync_tree(tmp)
    old = _aside(final)
    recover_directory(final)
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except OSError:
        recover_directory(final)
        raise
    fsync_dir(final.parent)
    if old.exists():
        shutil.rmtree(old)


def recover_directory(final: Path) -> None:
    """After a crash inside `replace_directory`: bring the moved-aside copy back if `final` is gone."""
    old = _aside(final)
    if old.exists() and not final.exists():
        os.replace(old, final)


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file, read in blocks of 1 MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()
