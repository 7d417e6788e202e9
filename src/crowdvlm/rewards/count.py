"""The paper's rewards: FGRPR precision, the strict format reward and the 0/1 baseline, and the base class of
every count reward.

Each reward is a pure per-sample helper plus a thin batch wrapper with TRL's signature
``f(completions, solution, **kwargs) -> list[float]``. The wrappers are picklable callables with a
``__name__`` (TRL logs ``rewards/<name>/mean``), parameterised by config fields rather than literals.
Answers are read by :func:`crowdvlm.parsing.parse_count`, the same parser evaluation uses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from crowdvlm.counts import read_count
from crowdvlm.parsing import completion_text, parse_count
from crowdvlm.rewards.params import check_params

# re.ASCII: "digits" are 0-9 only, as in crowdvlm.parsing (never another script's digits).
_THINK_ANSWER = re.compile(r"<think>.*?</think>\s*<answer>\d+</answer>", re.DOTALL | re.ASCII)
_ANSWER_ONLY = re.compile(r"<answer>\d+</answer>", re.ASCII)


# --------------------------------------------------------------------------- per-sample helpers


def fgrpr_precision(pred: int | None, truth: int, band: float = 0.5, ceiling: float = 1.5) -> float:
    """The paper's fuzzy precision reward r_p for one answer.

    With ``rel = |pred - truth| / truth``: ``ceiling - rel`` if ``rel < band`` (strict), else 0.
    For ``truth == 0`` the paper is silent (its code scores 0 even for a correct "0"); we give
    ``ceiling`` for an exact 0 and 0 otherwise. An unparseable answer (``None``) scores 0.

    >>> round(fgrpr_precision(20, 22), 4)   # the paper's worked example: 1.5 - 2/22
    1.4091
    >>> fgrpr_precision(11, 22), fgrpr_precision(0, 0), fgrpr_precision(None, 5)
    (0.0, 1.5, 0.0)
    """
    if pred is None:
        return 0.0
    if truth == 0:
        return ceiling if pred == 0 else 0.0
    rel = abs(pred - truth) / truth
    return ceiling - rel if rel < band else 0.0


def is_count_format(text: str, require_think: bool = True) -> bool:
    """True iff the whole text is ``<think>…</think>``, optional whitespace, ``<answer>DIGITS</answer>``.

    With ``require_think=False`` the whole text must be ``<answer>DIGITS</answer>`` (the answer-only prompt).

    >>> is_count_format("<think>one, two</think>\\n<answer>2</answer>"), is_count_format(" <answer>2</answer>")
    (True, False)
    """
    pattern = _THINK_ANSWER if require_think else _ANSWER_ONLY
    return pattern.fullmatch(text) is not None


# --------------------------------------------------------------------------- batch rewards (TRL signature)


class CountReward:
    """Base of the batch rewards: one float per completion, solutions read by :func:`crowdvlm.counts.read_count`."""

    __name__ = "count_reward"

    def __call__(self, completions: Sequence[Any], solution: Sequence[Any], **kwargs: Any) -> list[float]:
        if len(completions) != len(solution):
            raise ValueError(f"{self.__name__}: {len(completions)} completions but {len(solution)} solutions")
        return [
            self.score(completion_text(c), read_count(s)) for c, s in zip(completions, solution, strict=True)
        ]

    def score(self, text: str, truth: int) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "__name__")
        return f"{type(self).__name__}({params})"


class FGRPRPrecisionReward(CountReward):
    """FGRPR precision r_p (see :func:`fgrpr_precision`), answers read strictly by default as in the paper.

    >>> fgrpr_precision_reward(["<think>x</think><answer>20</answer>", "no answer"], solution=[22, 22])
    [1.4090909090909092, 0.0]
    """

    def __init__(self, band: float = 0.5, ceiling: float = 1.5, strict: bool = True, name: str = "fgrpr"):
        check_params(name, band=band, ceiling=ceiling, strict=strict, name=name)
        self.band, self.ceiling, self.strict = band, ceiling, strict
        self.__name__ = name

    def score(self, text: str, truth: int) -> float:
        return fgrpr_precision(parse_count(text, strict=self.strict), truth, self.band, self.ceiling)


class CountFormatReward(CountReward):
    """1.0 iff the whole completion has the strict count format (see :func:`is_count_format`), else 0.0.

    >>> count_format_reward(["<think>x</think> <answer>5</answer>", "<answer>5</answer> done"], solution=[5, 5])
    [1.0, 0.0]
    """

    def __init__(self, require_think: bool = True, value: float = 1.0, name: str = "format"):
        check_params(name, require_think=require_think, value=value, name=name)
        self.require_think, self.value = require_think, value
        self.__name__ = name

    def score(self, text: str, truth: int) -> float:
        return self.value if is_count_format(text, self.require_think) else 0.0


class BinaryCountReward(CountReward):
    """The GRPO 0/1 baseline: 1.0 iff the answered count equals the truth exactly, else 0.0.

    >>> binary_count_reward(["<answer>7</answer>", "<answer>8</answer>"], solution=["7", 7])
    [1.0, 0.0]
    """

    def __init__(self, strict: bool = True, name: str = "binary"):
        check_params(name, strict=strict, name=name)
        self.strict = strict
        self.__name__ = name

    def score(self, text: str, truth: int) -> float:
        return 1.0 if parse_count(text, strict=self.strict) == truth else 0.0


fgrpr_precision_reward = FGRPRPrecisionReward()
count_format_reward = CountFormatReward()
binary_count_reward = BinaryCountReward()
