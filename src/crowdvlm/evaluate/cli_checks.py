"""Checks of the eval / compare / predict command lines, made before anything is loaded.

Every failure is a :class:`crowdvlm.errors.UsageError` (exit 2) whose one line names the option and the
value, which ``crowdvlm.cli.main`` prints; argparse's own errors (an unknown option, ``--batch-size abc``)
are turned into the same kind of line by :class:`crowdvlm.argparsing.CommandParser`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crowdvlm.errors import UsageError

__all__ = [
    "check_input_file",
    "check_output_dir",
    "non_negative_int",
    "positive_float",
    "positive_int",
]


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer >= 1."""
    value = _number(int, text, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse ``type``: an integer >= 0."""
    value = _number(int, text, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite number > 0."""
    value = _number(float, text, "a number")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _number(kind: type, text: str, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def check_input_file(path: Path, option: str, what: str = "file") -> None:
    """Refuse a missing path or a directory where ``option`` wants a file."""
    if not path.exists():
        raise UsageError(f"{option} {path}: no such {what}")
    if path.is_dir():
        raise UsageError(f"{option} {path} is a directory; expected a {what}")


def check_output_dir(path: Path, option: str = "--out") -> None:
    """Refuse an existing file (or a path under one) where ``option`` wants a directory to write into."""
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{option} {path}: {parent} is a file; expected a directory")
            return
