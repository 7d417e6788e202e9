"""The one rule for a ground-truth count, shared by the dataset readers, the manifest and the rewards.

A count is a whole number from 0 to :data:`INT64_MAX` (training stores it in an int64 column). It may be
written as

- a JSON/Python integer (``22``; numpy integers too), or an integral float (``22.0``: some JSON writers
  turn every number into a float);
- a string of ASCII digits, optionally with a zero fraction and surrounding spaces (``"22"``, ``" 22.0 "``),
  or the same inside ``<answer>…</answer>`` (``"<answer>22</answer>"``, as VLM-R1 records store it).

Refused, with a ``ValueError`` that names the value and what was expected: a bool (``True`` is an ``int`` in
Python, never a count), a negative or fractional number, NaN or infinity, a number beyond int64, digits of
another script (``"٢٢"``, ``"２２"``: Python's ``int`` would accept them), signs, exponents, thousands
separators and any other text. ``None`` is refused unless the caller allows a missing count (a manifest
record for prediction only).

Model answers are a different matter: they are read by :mod:`crowdvlm.parsing`, which is lenient where the
model may be.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

__all__ = ["INT64_MAX", "read_count", "read_whole_number"]

INT64_MAX = 2**63 - 1

# Explicit [0-9] (never \d, which matches every script's digits); both answer tags or neither.
_DIGITS = r"(-?[0-9]+)(?:\.0*)?"  # a sign is read so that "-3" is refused as negative
_COUNT_TEXT = re.compile(rf"\s*(?:<answer>\s*{_DIGITS}\s*</answer>|{_DIGITS})\s*")
_SHOWN = 80  # characters of a bad value quoted in the message


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def read_whole_number(value: Any, name: str = "count") -> int:
    """A non-negative integer within int64 from a number (an int, or a float with no fraction).

    The numeric half of :func:`read_count`, for fields that are numbers only (image width and height).

    Raises:
        ValueError: naming ``name``, the value and what was expected.

    >>> read_whole_number(224, "width"), read_whole_number(224.0, "width")
    (224, 224)
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} {value!r} is a bool: expected a non-negative integer")
    if not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a non-negative integer, got {_shown(value)}")
    if isinstance(value, numbers.Integral):
        number = int(value)
    elif math.isfinite(value) and float(value).is_integer():
        number = int(value)
    else:
        raise ValueError(f"{name} {_shown(value)} is not a whole number: expected a non-negative integer")
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {number}")
    if number > INT64_MAX:
        raise ValueError(f"{name} {number} is beyond the 64-bit integer range (max {INT64_MAX})")
    return number


def read_count(value: Any, name: str = "solution", *, allow_none: bool = False) -> int | None:
    """A ground-truth count by the rule of this module (see the module docstring).

    Args:
        value: the stored count (a number or a string).
        name: the field, for the message.
        allow_none: return ``None`` for a missing count instead of refusing it.

    Raises:
        ValueError: naming ``name``, the value and what was expected.

    >>> [read_count(v) for v in (22, 22.0, "22", " 22.0 ", "<answer>22</answer>")]
    [22, 22, 22, 22, 22]
    """
    if value is None and allow_none:
        return None
    if isinstance(value, str):
        match = _COUNT_TEXT.fullmatch(value)
        if match is None:
            raise ValueError(
                f"{name} {_shown(value)} is not a count: expected ASCII digits such as '22' or "
                "'<answer>22</answer>'"
            )
        digits = match.group(1) or match.group(2)
        if len(digits.lstrip("-").lstrip("0")) > len(str(INT64_MAX)):  # before int(): no 4,300-digit limit
            raise ValueError(f"{name} {_shown(value)} is beyond the 64-bit integer range (max {INT64_MAX})")
        return read_whole_number(int(digits), name)
    if value is None:
        raise ValueError(f"{name} is missing (null): expected a non-negative integer count")
    return read_whole_number(value, name)
