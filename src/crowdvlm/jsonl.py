"""Reading the JSONL files that crowdvlm writes itself: training logs and evaluation predictions.

One JSON object per line, blank lines ignored. The one difference between files is what a torn last line
means: a file that is appended to while a run may crash (``predictions.jsonl``) can end in half a line, the
trace of an interrupted write, which its reader drops (and, to append again, cuts off); anywhere else every
line must be a record. Input data (manifests, record files) has its own readers in :mod:`crowdvlm.data`,
which report bad records as :class:`crowdvlm.data.common.DataError` and may skip them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

__all__ = ["read_jsonl"]

logger = logging.getLogger(__name__)

TornTail = Literal["raise", "drop", "truncate"]


def read_jsonl(
    path: str | Path, *, torn_tail: TornTail = "raise", record: str = "JSON object"
) -> list[dict[str, Any]]:
    """Read a JSONL file of objects.

    A *torn* last line is one without its trailing newline, or a complete last line that is not a JSON
    object: what a crash in the middle of an append leaves.

    Args:
        path: the file.
        torn_tail: "raise": a torn last line is an error like any other bad line, though a last line
            that is a valid object is read even without its newline; "drop": it is dropped with a warning;
            "truncate": also cut off the file, so that appending can continue after it.
        record: what a line holds, for the error message ("JSON prediction record").

    Returns:
        The objects in file order.

    Raises:
        ValueError: a line is not a JSON object (for "drop" and "truncate": a line other than the last);
            the message names the file and the line.

    >>> import tempfile
    >>> log = Path(tempfile.mkdtemp()) / "log.jsonl"
    >>> _ = log.write_text('{"step": 1}\\n\\n{"step": 2}\\n{"st')
    >>> read_jsonl(log, torn_tail="drop")
    [{'step': 1}, {'step': 2}]
    """
    path = Path(path)
    lines = path.read_bytes().split(b"\n")
    # After the final "\n" split() leaves b""; anything else there is a line whose write never finished.
    tail = lines.pop()
    if torn_tail == "raise" and tail:
        lines.append(tail)
        tail = b""
    rows, good_bytes = [], 0
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise TypeError(f"got a {type(row).__name__}")
            except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as err:
                if torn_tail != "raise" and number == len(lines) and not tail:
                    tail = line  # the last line is complete but garbled: also the trace of a crash mid-write
                    break
                raise ValueError(f"{path}, line {number}: expected a {record} ({err})") from err
            rows.append(row)
        good_bytes += len(line) + 1
    if tail:
        logger.warning(
            "%s: dropping an incomplete last line (%d bytes) left by an interrupted run", path, len(tail)
        )
        if torn_tail == "truncate":
            with path.open("r+b") as f:
                f.truncate(good_bytes)
    return rows
