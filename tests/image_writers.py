"""Image files that break naive readers, written by the tests themselves (bytes, not fixtures)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def good_jpeg(path: Path, size: tuple[int, int] = (56, 56)) -> Path:
    Image.new("RGB", size, (120, 80, 40)).save(path, quality=90)
    return path


def truncated_jpeg(path: Path) -> Path:
    """A JPEG cut in half: the header opens, the decode fails."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def thin_png(path: Path, size: tuple[int, int] = (1, 5000)) -> Path:
    """Decodes fine, but Qwen-VL's processor refuses an aspect ratio over 200."""
    Image.new("RGB", size, (255, 255, 255)).save(path)
    return path


def empty_file(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def huge_png_header(path: Path, side: int = 30000) -> Path:
    """A PNG whose header claims side x side pixels (900 M): PIL refuses it as a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b""))
    return path


def oriented_jpeg(path: Path, raw: np.ndarray, orientation: int) -> Path:
    """Save ``raw`` (H, W, 3) pixels as a JPEG whose EXIF says ``orientation``."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(raw).save(path, quality=100, subsampling=0, exif=exif)
    return path
