"""The one reader of model answers: rewards and evaluation both call :func:`parse_count`.

Two modes:

* **strict** (the paper's reward): the first ``<answer>DIGITS</answer>`` anywhere in the text, digits only —
  no spaces, signs, separators or units inside the tags.
* **lenient** (evaluation default): the first ``<answer>…</answer>`` block is read leniently — whitespace,
  thousands separators ("1,234", "1 234"), a trailing unit ("22 people"), a decimal (rounded half up).
  Without a closed answer block, the last number in the text is taken.

In both modes a negative number, a number of more than :data:`MAX_DIGITS` digits, an empty or tag-only answer
gives ``None``. No input raises: every search here is linear in the length of the text.

>>> parse_count("<think>…</think><answer>22</answer>", strict=True)
22
>>> parse_count("<answer> 1,234 people </answer>", strict=False)
1234
>>> parse_count("<answer> 22 </answer>", strict=True) is None
True
>>> parse_count("I see about 17.5 sheep.")
18
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

__all__ = ["MAX_DIGITS", "completion_text", "parse_count"]

MAX_DIGITS = 12
OPEN, CLOSE = "<answer>", "</answer>"

_STRICT_BODY = re.compile(r"(\d+)</answer>")
# A number: optional minus sign, either 1-3 digits followed by groups of exactly 3 after ',' / space /
# no-break space / thin space (thousands separators), or a plain digit run; then an optional decimal part.
# The look-behind keeps us from starting in the middle of a digit run or right after a decimal point.
_NUMBER = re.compile(r"(?<![\d.,])(-?)(\d{1,3}(?:[,\u00a0\u202f ]\d{3})+(?!\d)|\d+)(?:\.(\d+))?")


def completion_text(completion: Any) -> str:
    """Return the text of a completion.

    Accepts a plain string or TRL's conversational form: a list of messages
    ``[{"role": "assistant", "content": ...}]`` whose content is a string or a list of typed parts
    (``{"type": "text", "text": ...}``). Text of several messages or parts is joined in order.

    >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "<answer>3</answer>"}]}])
    '<answer>3</answer>'
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return completion_text(completion.get("content", completion.get("text", "")))
    if isinstance(completion, Iterable):
        parts = []
        for item in completion:
            if isinstance(item, Mapping) and item.get("type", "text") != "text" and "content" not in item:
                continue  # an image or other non-text part
            parts.append(completion_text(item))
        return "".join(parts)
    return str(completion)


def _to_int(sign: str, digits: str, decimals: str | None) -> int | None:
    digits = re.sub(r"\D", "", digits)
    if sign or len(digits.lstrip("0")) > MAX_DIGITS:
        return None
    if decimals:
        value = Decimal(f"{digits}.{decimals[:MAX_DIGITS]}").quantize(Decimal(1), rounding=ROUND_HALF_UP)
        return int(value)
    return int(digits)


def _first_number(text: str) -> int | None:
    match = _NUMBER.search(text)
    return _to_int(*match.groups()) if match else None


def _last_number(text: str) -> int | None:
    last = None
    for last in _NUMBER.finditer(text):  # noqa: B007 - we want the final match
        pass
    return _to_int(*last.groups()) if last else None


def _parse_strict(text: str) -> int | None:
    start = text.find(OPEN)
    while start != -1:
        match = _STRICT_BODY.match(text, start + len(OPEN))
        if match:
            digits = match.group(1)
            return None if len(digits.lstrip("0")) > MAX_DIGITS else int(digits)
        start = text.find(OPEN, start + len(OPEN))
    return None


def _parse_lenient(text: str) -> int | None:
    start = text.find(OPEN)
    end = text.find(CLOSE, start + len(OPEN)) if start != -1 else -1
    if start != -1 and end != -1:
        return _first_number(text[start + len(OPEN) : end])
    return _last_number(text)


def parse_count(text: Any, strict: bool = False) -> int | None:
    """Read the count a model answered.

    Args:
        text: the completion, as a string or in TRL's conversational form (see :func:`completion_text`).
        strict: the paper's rule (first ``<answer>DIGITS</answer>``) if True; the lenient reading if False.

    Returns:
        The count as a non-negative int, or ``None`` when no valid count can be read.
    """
    try:
        text = completion_text(text)
    except RecursionError:  # pathological nesting: unreadable, never an exception
        return None
    return _parse_strict(text) if strict else _parse_lenient(text)
