"""The one reader of model answers: rewards and evaluation both call :func:`parse_count`.

Two modes:

* **strict** (the paper's reward): the first ``<answer>DIGITS</answer>`` anywhere in the text, digits only —
  no spaces, signs, separators or units inside the tags.
* **lenient** (evaluation default): the first ``<answer>…</answer>`` block is read leniently — whitespace,
  thousands separators ("1,234", "1 234"), a trailing unit ("22 people"), a decimal (rounded half up).
  Without a closed answer block, the last number in the text is taken.

In both modes a negative number, a number of more than :data:`MAX_DIGITS` digits, an empty or tag-only answer
gives ``None``. No input raises: every search here is linear in the length of the text.

"Digits" means the ASCII digits ``0``-``9`` only, in both modes: Arabic-Indic (``٣``), Devanagari (``३``),
fullwidth (``３``) and superscript (``³``) digits are not digits here, so ``<answer>٣</answer>`` is unparseable
and the lenient reading does not take ``３`` as a number. Leading zeros do not count towards
:data:`MAX_DIGITS` (``"0" * 5000 + "5"`` reads as 5), and no digit string, however long, reaches Python's
``int()`` with more than :data:`MAX_DIGITS` significant digits, so its digit limit never applies. Other
characters (NUL bytes, control characters, lone surrogates) are ordinary non-digit text.

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

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

__all__ = ["MAX_DIGITS", "completion_text", "parse_count"]

MAX_DIGITS = 12
OPEN, CLOSE = "<answer>", "</answer>"

# re.ASCII: ``\d`` is [0-9], never another script's digits (which ``int()`` would also accept).
_STRICT_BODY = re.compile(r"(\d+)</answer>", re.ASCII)
# A number: optional minus sign, either 1-3 digits followed by groups of exactly 3 after ',' / space /
# no-break space / thin space (thousands separators), or a plain digit run; then an optional decimal part.
# The look-behind keeps us from starting in the middle of a digit run or right after a decimal point.
_NUMBER = re.compile(r"(?<![\d.,])(-?)(\d{1,3}(?:[,\u00a0\u202f ]\d{3})+(?!\d)|\d+)(?:\.(\d+))?", re.ASCII)
_NON_DIGIT = re.compile(r"\D", re.ASCII)
_END = object()  # marks an exhausted iterator in completion_text's walk


def completion_text(completion: Any) -> str:
    """Return the text of a completion.

    Accepts a plain string or TRL's conversational form: a list of messages
    ``[{"role": "assistant", "content": ...}]`` whose content is a string or a list of typed parts
    (``{"type": "text", "text": ...}``). Text of several messages or parts is joined in order. The walk is
    iterative, so content nested any depth deep never raises ``RecursionError``; a container that contains
    itself contributes nothing the second time.

    >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "<answer>3</answer>"}]}])
    '<answer>3</answer>'
    """
    parts: list[str] = []
    # A stack of (iterator over a container's children, id of that container) replaces recursion.
    stack: list[tuple[Iterator[Any], int]] = [(iter((completion,)), 0)]
    open_ids: set[int] = set()
    while stack:
        item = next(stack[-1][0], _END)
        if item is _END:
            open_ids.discard(stack.pop()[1])
        elif item is None:
            continue
        elif isinstance(item, str):
            parts.append(item)
        elif isinstance(item, bytes | bytearray):
            parts.append(bytes(item).decode("utf-8", errors="replace"))
        elif isinstance(item, Mapping | Iterable):
            if id(item) in open_ids:
                continue  # a cycle: already being read further up
            open_ids.add(id(item))
            stack.append((_children(item), id(item)))
        else:
            parts.append(str(item))
    return "".join(parts)


def _children(container: Mapping | Iterable) -> Iterator[Any]:
    """What :func:`completion_text` reads inside a message (its content) or a list (its text parts)."""
    if isinstance(container, Mapping):
        return iter((container.get("content", container.get("text", "")),))
    return (
        item
        for item in container
        # an image or other non-text part
        if not (isinstance(item, Mapping) and item.get("type", "text") != "text" and "content" not in item)
    )


def _count_of(digits: str) -> int | None:
    """An ASCII digit string as an int, or None past :data:`MAX_DIGITS` significant digits.

    Leading zeros are cut before ``int()``, so a long run of them can never reach Python's int digit limit.
    """
    significant = digits.lstrip("0")
    return None if len(significant) > MAX_DIGITS else int(significant or "0")


def _to_int(sign: str, digits: str, decimals: str | None) -> int | None:
    count = _count_of(_NON_DIGIT.sub("", digits))
    if sign or count is None:
        return None
    if decimals:
        value = Decimal(f"{count}.{decimals[:MAX_DIGITS]}").quantize(Decimal(1), rounding=ROUND_HALF_UP)
        return int(value)
    return count


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
            return _count_of(match.group(1))
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
    text = completion_text(text)
    return _parse_strict(text) if strict else _parse_lenient(text)


# --------------------------------------------------------------------------- the reasoning

__all__ += ["thinking_text"]

# Non-greedy up to the first close tag; an unclosed block runs to the end of the text.
_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)


def thinking_text(text: Any) -> str | None:
    """The reasoning inside the first ``<think>…</think>`` (an unclosed block runs to the end), or None.

    Args:
        text: the completion, as a string or in TRL's conversational form (see :func:`completion_text`).

    >>> thinking_text("<think> three rows of four </think><answer>12</answer>")
    'three rows of four'
    >>> thinking_text("<answer>12</answer>") is None
    True
    """
    match = _THINK.search(completion_text(text))
    return match.group(1).strip() if match else None


# --------------------------------------------------------------------------- point answers

__all__ += ["MAX_POINTS", "PointAnswer", "parse_points"]

#: Points read from one answer at most; further points are counted (``PointAnswer.capped``), not kept.
MAX_POINTS = 5000

# One Qwen-style point: "point_2d": [x, y] (quotes optional). Bounded digit runs keep every match short, and
# the pattern has no nested repetition, so scanning is linear in the text.
_POINT = re.compile(
    r"""["']?point_2d["']?\s*:\s*\[\s*(-?\d{1,9}(?:\.\d{1,9})?)\s*,\s*(-?\d{1,9}(?:\.\d{1,9})?)\s*\]""",
    re.ASCII,  # ASCII digits only, as for counts (float() would read other scripts' digits too)
)


@dataclass(frozen=True)
class PointAnswer:
    """What :func:`parse_points` read from a point answer.

    Attributes:
        points: the ``(x, y)`` points kept, in answer order (frame coordinates, duplicates included).
        stated: the count in the ``<answer>`` block after the points, or None.
        capped: points past the cap, counted but not kept.
        outside: points outside the frame (``x`` or ``y`` below 0 or beyond its side), dropped.
    """

    points: tuple[tuple[float, float], ...] = ()
    stated: int | None = None
    capped: int = 0
    outside: int = 0

    @property
    def count(self) -> int:
        """The count read from the points: the number of points kept."""
        return len(self.points)

    @property
    def consistent(self) -> bool:
        """Whether the stated count equals the number of points listed (kept, past the cap or outside)."""
        return self.stated is not None and self.stated == len(self.points) + self.capped + self.outside


def parse_points(
    text: Any,
    frame_size: tuple[float, float] | None = None,
    *,
    max_points: int = MAX_POINTS,
    strict: bool = False,
) -> PointAnswer:
    """Read the points and the stated count of a point answer; never raises, linear in the text.

    A point answer lists Qwen-style points, ``[{"point_2d": [x, y], "label": "person"}, ...]``, then the count
    in ``<answer>N</answer>``. Every ``"point_2d": [x, y]`` before the first ``<answer>`` is a point (the rest
    of the JSON is not required to be valid: a truncated list still yields its complete points). The stated
    count is read by :func:`parse_count` from the first ``<answer>`` on (``strict`` as there); a number that
    is not inside an answer block is never taken for the count, since it is likely a coordinate.

    Args:
        text: the completion (string or TRL's conversational form).
        frame_size: ``(width, height)`` of the frame the model points in; points outside it are dropped and
            counted in ``outside``. None: no bound (negative coordinates are still outside).
        max_points: keep at most this many points; the others are counted in ``capped``.
        strict: read the stated count with the paper's strict rule.

    >>> a = parse_points('[{"point_2d": [10, 0], "label": "dot"}, {"point_2d": [300, 5]}]<answer>2</answer>', (100, 80))
    >>> a.points, a.stated, a.outside, a.consistent
    (((10.0, 0.0),), 2, 1, True)
    >>> parse_points("no points here").count
    0
    """
    try:
        text = completion_text(text)
    except RecursionError:
        return PointAnswer()
    end = text.find(OPEN)
    body = text if end == -1 else text[:end]
    stated = parse_count(text[end:], strict=strict) if end != -1 else None
    width, height = frame_size if frame_size is not None else (math.inf, math.inf)
    points: list[tuple[float, float]] = []
    capped = outside = 0
    for match in _POINT.finditer(body):
        x, y = float(match.group(1)), float(match.group(2))
        if not (0 <= x <= width and 0 <= y <= height):
            outside += 1
        elif len(points) < max_points:
            points.append((x, y))
        else:
            capped += 1
    return PointAnswer(tuple(points), stated, capped, outside)
