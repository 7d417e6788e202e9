"""Reading the text files of datasets (manifests, JSONL records, CSV counts): UTF-8, a BOM tolerated.

A line that is not UTF-8 is a :class:`~crowdvlm.data.errors.DataError` naming the file and the line; where
records are one per line, it goes through the :class:`~crowdvlm.data.errors.SkipLog` like any bad record, so
``--skip-bad`` leaves it out and counts it.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path

from crowdvlm.data.errors import DataError, SkipLog
from crowdvlm.data.images import special_file


def _refuse_special(path: Path) -> None:
    """A named pipe, socket or device is refused before it is opened (a pipe would block the read forever)."""
    what = special_file(path)
    if what is not None:
        raise DataError(path, f"not a regular file ({what})", kind="malformed")


def _decode(raw: bytes, path: Path, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            path,
            f"not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); save the file as UTF-8",
            record=where,
            kind="not-utf8",
        ) from None


def read_lines(path: str | Path, skips: SkipLog | None = None) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` for each line of ``path``, without the line end or a leading UTF-8 BOM.

    Args:
        skips: where a line that is not UTF-8 goes (default: raise).

    Raises:
        DataError: a line that is not UTF-8 (unless ``skips`` skips it), naming the file and the line; a
            named pipe, socket or device.
        FileNotFoundError / IsADirectoryError: ``path`` is not a readable file.
    """
    path = Path(path)
    _refuse_special(path)
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, 1):
            if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                text = _decode(raw, path, f"line {line_no}")
            except DataError as err:
                (skips or SkipLog()).add(err)
                continue
            yield line_no, text.rstrip("\r\n")


def read_text(path: str | Path) -> str:
    """The whole of a UTF-8 text file (a leading BOM dropped); a DataError naming the file otherwise."""
    path = Path(path)
    _refuse_special(path)
    raw = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    return _decode(raw, path, None)
