"""Checking a PNG file without decoding it: signature, IHDR chunk, sensible size."""

from __future__ import annotations

import struct
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which a valid PNG has first."""
    data = path.read_bytes()[:24]
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG file"
    assert data[12:16] == b"IHDR", f"{path}: first chunk is not IHDR"
    return struct.unpack(">II", data[16:24])


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} was not written"
    width, height = png_size(path)
    assert 300 <= width <= 4000 and 200 <= height <= 3000, f"{path}: {width}x{height} is not a sensible figure size"
    assert path.stat().st_size > 10_000, f"{path}: {path.stat().st_size} bytes, too small to hold a figure"
