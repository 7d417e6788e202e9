"""No model output makes the parser, a reward or `crowdvlm eval` scoring raise.

One table of hostile answers runs through :func:`parse_count` (both modes), every reward registered in
``REWARDS`` (so rewards added later are covered too) and a whole `evaluate` run whose backend answers with
them. "Digits" are ASCII digits: other scripts' digits never count.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from crowdvlm.evaluate.backends.base import Answer, EvalItem, Prepared
from crowdvlm.evaluate.predictions import read_predictions
from crowdvlm.evaluate.run import evaluate
from crowdvlm.parsing import MAX_DIGITS, completion_text, parse_count, parse_points
from crowdvlm.rewards import REWARDS


def _nested(depth: int, leaf: object) -> object:
    """``leaf`` wrapped ``depth`` times in TRL's message form (built iteratively: no recursion here)."""
    for _ in range(depth):
        leaf = [{"role": "assistant", "content": leaf}]
    return leaf


def _cyclic() -> list:
    parts: list = [{"type": "text", "text": "<answer>4</answer>"}]
    parts.append(parts)
    return parts


MEGABYTE = 1 << 20
# name -> (completion, strict reading, lenient reading)
HOSTILE: dict[str, tuple[object, int | None, int | None]] = {
    # Python refuses int() of strings over 4300 digits: leading zeros must never get that far
    "5000 zeros then 5": ("<answer>" + "0" * 5000 + "5</answer>", 5, 5),
    "5000 zeros, no tags": ("0" * 5000 + "5", None, 5),
    "5000 significant digits": ("<answer>" + "9" * 5000 + "</answer>", None, None),
    "1 MB of digits": ("7" * MEGABYTE, None, None),
    "1 MB of digits in tags": ("<answer>" + "7" * MEGABYTE + "</answer>", None, None),
    "huge decimal": ("<answer>" + "0" * 5000 + "1." + "5" * 5000 + "</answer>", None, 2),
    f"{MAX_DIGITS} digits": (
        "<answer>" + "9" * MAX_DIGITS + "</answer>",
        10**MAX_DIGITS - 1,
        10**MAX_DIGITS - 1,
    ),
    # nesting deeper than Python's recursion limit
    "nested 5000 deep": (_nested(5000, "<answer>3</answer>"), 3, 3),
    "nested 20000 deep": (_nested(20_000, [{"type": "text", "text": "<answer>6</answer>"}]), 6, 6),
    "list containing itself": (_cyclic(), 4, 4),
    # other scripts' digits are not digits ("digits" = ASCII 0-9, both modes)
    "Arabic-Indic": ("<answer>\u0663</answer>", None, None),
    "Eastern Arabic-Indic": ("<answer>\u06f7</answer>", None, None),
    "Devanagari": ("<answer>\u0969\u0966</answer>", None, None),
    "Bengali": ("<answer>\u09ea</answer>", None, None),
    "Thai": ("<answer>\u0e53</answer>", None, None),
    "fullwidth in tags": ("<answer>\uff13</answer>", None, None),
    "fullwidth in prose": ("there are \uff13\uff14 people", None, None),
    "superscript": ("<answer>\u00b3</answer>", None, None),
    "mathematical bold": ("<answer>\U0001d7d1</answer>", None, None),
    "ASCII next to Arabic-Indic": ("<answer>2\u0663</answer>", None, 2),
    # control characters and broken text are ordinary non-digit characters
    "NUL inside": ("<answer>\x005</answer>", None, 5),
    "NUL bytes around": ("\x00" * 1000 + "<answer>8</answer>" + "\x00", 8, 8),
    "lone surrogate": ("<answer>\ud8009</answer>", None, 9),
    "1 MB of text then an answer": ("x" * MEGABYTE + "<answer>42</answer>", 42, 42),
    "1 MB of open tags": ("<answer>" * (MEGABYTE // 8), None, None),
    "1 MB of think": ("<think>" + "</think>" * (MEGABYTE // 8) + "<answer>1</answer>", 1, 1),
    "1 MB of separators": ("<answer>" + "1 " * (MEGABYTE // 2) + "</answer>", None, 1),
    "bytes": (b"<answer>12</answer>", 12, 12),
}


# point answers in hostile shapes, for the point rewards
POINT_ANSWERS = (
    '[{"point_2d": [\u0663, \u0664]}]<answer>1</answer>',  # Arabic-Indic coordinates
    '[{"point_2d": [3, 4]}]' * 20_000 + "<answer>" + "0" * 5000 + "1</answer>",
    '[{"point_2d": [' + "9" * 5000 + ", 1]}]<answer>1</answer>",
    '{"point_2d": [3, 4' * 50_000,
)


@pytest.mark.parametrize("name", HOSTILE)
def test_parser_reads_hostile_answers_without_raising(name):
    completion, strict, lenient = HOSTILE[name]
    assert parse_count(completion, strict=True) == strict
    assert parse_count(completion, strict=False) == lenient


def test_point_parser_wants_ascii_digits_and_never_raises():
    assert parse_points('[{"point_2d": [\u0663, \u0664]}]<answer>1</answer>').count == 0
    assert parse_points('[{"point_2d": [3, 4]}]<answer>1</answer>').points == ((3.0, 4.0),)
    for answer in POINT_ANSWERS:
        parse_points(answer, (28, 28))
    assert parse_points(_nested(20_000, '[{"point_2d": [3, 4]}]')).count == 1


def test_completion_text_walks_any_depth():
    assert completion_text(_nested(50_000, "<answer>3</answer>")) == "<answer>3</answer>"
    assert completion_text(_cyclic()) == "<answer>4</answer>"


@pytest.mark.parametrize("reward_name", sorted(REWARDS))
def test_every_reward_scores_hostile_answers(reward_name):
    reward = REWARDS[reward_name]
    completions = [completion for completion, _, _ in HOSTILE.values()] + list(POINT_ANSWERS)
    n = len(completions)
    # the point columns of a point training set; count rewards ignore them, as TRL passes every column
    columns = {"points": [[[3.0, 4.0]]] * n, "image_size": [[16, 16]] * n, "frame_size": [[28, 28]] * n}
    scores = reward(completions, solution=[5] * n, **columns)
    assert len(scores) == len(completions)
    assert all(isinstance(s, float) and s == s for s in scores)  # floats, never NaN


def test_format_reward_wants_ascii_digits():
    strict_format = REWARDS["format"]
    assert strict_format(["<think>a</think><answer>3</answer>"], solution=[3]) == [1.0]
    assert strict_format(["<think>a</think><answer>\u0663</answer>"], solution=[3]) == [0.0]
    assert strict_format(["<think>a</think><answer>\uff13</answer>"], solution=[3]) == [0.0]


class ScriptedBackend:
    """Answers item ``i`` with the ``i``-th hostile completion (as text, the form every backend returns)."""

    name = "scripted"

    def __init__(self, texts: list[str]):
        self.texts = texts

    def describe(self):
        return {"backend": self.name, "model": "scripted", "max_new_tokens": 0}

    def prepare(self, items):
        return Prepared(items=items, errors=[None] * len(items), payload=None)

    def generate(self, prepared):
        return [Answer(text=self.texts[int(item.id)]) for item in prepared.items]


def test_eval_scores_hostile_answers(tmp_path):
    cases = [(name, completion_text(c), strict, lenient) for name, (c, strict, lenient) in HOSTILE.items()]
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    items = [EvalItem(str(i), "hostile", tmp_path / "x.png", "How many?", 5) for i in range(len(cases))]
    backend = ScriptedBackend([text for _, text, _, _ in cases])
    for parse_strict in (False, True):
        out = tmp_path / f"run-{parse_strict}"
        metrics = evaluate(backend, items, out, batch_size=7, parse_strict=parse_strict, progress=False)
        assert metrics["overall"]["n"] == len(cases) and metrics["overall"]["errors"] == 0
        by_id = {p.id: p for p in read_predictions(out / "predictions.jsonl")}
        for i, (name, _, strict, lenient) in enumerate(cases):
            assert by_id[str(i)].pred == (strict if parse_strict else lenient), name
        json.loads((out / "metrics.json").read_text())
        assert "\ud800" not in (out / "predictions.jsonl").read_text(encoding="utf-8")
        assert (out / "report.md").read_text(encoding="utf-8")
